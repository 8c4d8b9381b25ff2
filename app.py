"""Placeholder until the app lands: python app.py."""
print("the app is not built yet")
