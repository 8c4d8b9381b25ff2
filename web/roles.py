"""Who may do what: one table (ROLES: every action of the app, its role, what it is and where it is) and
one decision (`Roles.refusal`). Every page event (app.py `Wiring.on`), every Gradio API endpoint
(web/api.py `expose`) and every JSON route (`acts_as`) names its action, and an action not in the table
cannot be wired: tests/web/test_threats.py checks that each one the app serves has a role, and that the
README's table is this one.

A visitor may use the demo; an admin (a name in ADMIN_USERS, signed in with Hugging Face) may change
it. With ADMIN_USERS empty, on a Space (SPACE_ID set) nobody is an admin: the admin actions are refused
with a message that says to set ADMIN_USERS (fail closed); off a Space (your own machine) everyone is.
"""
from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

log = logging.getLogger("app")

VISITOR, ADMIN = "visitor", "admin"

# action: (role, what it lets someone do, where it is: page controls and API endpoints)
ROLES = {
    "classify": (VISITOR, "classify and explain a tweet", "the chat, `/classify`, `/explain`, `POST /api/classify`"),
    "classify_file": (VISITOR, "classify a file of tweets", "*Classify a file of tweets*, `/classify_file`"),
    "correct": (VISITOR, "correct a reply (limited per person; a visitor's waits for an admin's review)",
                "*Save the correction*, `/correct`"),
    "view": (VISITOR, "see what serves, the job, the runs, the data views and the app's health",
             "the tabs' views, `/status`, `GET /health`, `GET /api/model`"),
    "preview": (VISITOR, "preview a dataset: the app's own, or a public Hub dataset's first rows (read without "
                "the server's token)", "*Preview the data*, a dataset named in the Data box"),
    "train": (VISITOR, "retrain with the owner's settings (when PUBLIC_RETRAIN is on; one job at a time, one "
              "visitor start per RETRAIN_COOLDOWN_S)", "*Retrain*, `/train` without parameters"),
    "settings": (ADMIN, "retrain with a setting of their own (model, data, sizes, ...)",
                 "*Retrain* with a changed setting, `/train` with parameters"),
    "upload": (ADMIN, "upload a training file", "*Your training file*, `/upload_dataset`"),
    "review": (ADMIN, "review the data for label errors, and keep, relabel or exclude them", "*Review data*"),
    "corrections": (ADMIN, "accept or reject people's corrections", "*Review corrections*"),
    "stop": (ADMIN, "stop the running job", "*Stop*, `/stop`"),
    "resume": (ADMIN, "resume a stopped or interrupted run", "*Resume*, `/resume`"),
    "push": (ADMIN, "push the last run to HUB_MODEL_ID again", "*Push again*, `/push`"),
    "serve": (ADMIN, "choose the run that serves", "*Serve this run*, *Serve the newest run*"),
}


def acts_as(action: str):
    """Mark a route or handler with its action (a KeyError for an action that is not in ROLES)."""
    ROLES[action]

    def mark(fn):
        fn.action = action
        return fn
    return mark


@dataclass(frozen=True)
class Caller:
    """Who sends a request: the signed-in Hugging Face user ("" = none), the key its limits count by (the
    user, else the request's address), and whether it is an admin."""
    user: str = ""
    client: str = "local"
    admin: bool = False


class Roles:
    """The admin rule of one app: `caller()` says who asks, `refusal()` whether they may."""

    def __init__(self, admins=(), on_space: bool = False, public_retrain: bool = True):
        self.admins = frozenset(a.strip() for a in admins if a.strip())
        self.on_space, self.public_retrain = on_space, public_retrain

    def caller(self, profile=None, request=None) -> Caller:
        """The Caller of a request: `profile` a gr.OAuthProfile (or anything with a username) or None,
        `request` a gr.Request or a starlette Request (or None: a call from inside the app)."""
        user = str(getattr(profile, "username", "") or "")
        admin = user in self.admins if self.admins else not self.on_space
        return Caller(user, f"user:{user}" if user else f"ip:{self.address(request)}", admin)

    def address(self, request) -> str:
        """The request's client address. On a Space the app sits behind its proxy: the address is the
        last one of X-Forwarded-For that is not the proxies' own (private) one, so that an address a
        client puts in the header itself does not count."""
        if request is None:
            return "local"
        client = getattr(request, "client", None)
        host = getattr(client, "host", None) or "unknown"
        forwarded = (getattr(request, "headers", None) or {}).get("x-forwarded-for", "") if self.on_space else ""
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            try:
                if ipaddress.ip_address(hop).is_global:
                    return hop
            except ValueError:
                break
        return host

    def role(self, action: str) -> str:
        role = ROLES[action][0]
        return ADMIN if action == "train" and not self.public_retrain else role

    def refusal(self, action: str, caller: Caller) -> str:
        """"" when `caller` may do `action`, else why not, in one line that says what to do."""
        if action not in ROLES:
            return f"unknown action {action!r}"
        what = ROLES[action][1].split(" (")[0]
        if self.role(action) == VISITOR or caller.admin:
            return ""
        if not self.admins:
            return (f"only admins may {what}, and this Space has none: its owner sets ADMIN_USERS (Hugging "
                    f"Face user names) in the Space's settings")
        names = ", ".join(sorted(self.admins))
        if not caller.user:
            return f"only {names} may {what} (ADMIN_USERS): sign in with Hugging Face first"
        return f"{caller.user} may not {what}: only {names} may (ADMIN_USERS)"

    def banner(self) -> str:
        """What the page says once at the top when the owner has not named any admin ("" otherwise)."""
        if self.admins or not self.on_space:
            return ""
        return ("🔒 **This Space has no admins yet** (ADMIN_USERS is empty): anyone may classify, correct a reply "
                "and press Retrain with the owner's settings; changing a setting, uploading data, reviewing, "
                "Stop, Resume, Push again and choosing the run that serves wait until the owner sets ADMIN_USERS.")

    def warn(self) -> None:
        """At start-up: say in the log when everyone who reaches the app is an admin."""
        if not self.admins and not self.on_space:
            log.warning("ADMIN_USERS is empty: everyone who reaches this app may retrain with any setting, stop, "
                        "push and choose what serves (fine on your own machine; on a Space set ADMIN_USERS)")


def table_md() -> str:
    """ROLES as the README's Markdown table (tests/web/test_threats.py checks that the README has it)."""
    rows = [f"| `{action}` | {role} | {what} | {where} |" for action, (role, what, where) in ROLES.items()]
    return "\n".join(["| action | who | what | where |", "|---|---|---|---|", *rows])
