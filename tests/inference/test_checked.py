"""inference.checked: a lossy format's answer stands unless its two best labels lie within the gate."""
import numpy as np
import pytest

from inference.checked import Checked, gate_of, unsure


def test_the_gate_is_twice_the_largest_move_of_a_label_and_close_calls_are_checked():
    exact = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
    moved = exact * np.exp([[0.05, 0.0, 0.0], [0.0, -0.02, 0.0]])
    moved /= moved.sum(1, keepdims=True)
    assert gate_of(moved, exact) == pytest.approx(2 * (0.05 - 0.05 / 3), rel=1e-5)  # the move beyond the row's mean
    probs = np.array([[0.5, 0.3, 0.2], [0.41, 0.2, 0.39], [0.1, 0.1, 0.8]])
    assert unsure(probs, gate=0.1).tolist() == [False, True, False]  # log 0.41 - log 0.39 = 0.05 < 0.1


def test_only_the_close_calls_go_to_the_exact_format():
    fast = lambda texts: np.array([[0.41, 0.2, 0.39] if t == "close" else [0.8, 0.1, 0.1] for t in texts])
    asked = []

    def exact(texts):
        asked.append(texts)
        return np.array([[0.3, 0.3, 0.4]] * len(texts))

    checked = Checked(fast, gate=0.1)
    got = checked(["clear", "close", "clear"], exact)
    assert asked == [["close"]] and (checked.answered, checked.rechecked) == (3, 1)
    np.testing.assert_allclose(got, [[0.8, 0.1, 0.1], [0.3, 0.3, 0.4], [0.8, 0.1, 0.1]])
