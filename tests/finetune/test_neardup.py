"""Near-duplicates: links, mentions, case, punctuation and a typo do not hide a copy; different tweets stay apart."""
from finetune.neardup import near_copies, near_duplicate_groups, normalise, resolve


def test_normalise_drops_links_mentions_case_punctuation_and_repeats():
    assert normalise("@bob OMG I love this!!! http://t.co/x") == "omg i love this"
    assert normalise("sooooo   happy :)") == "soo happy"


def test_near_copies_are_grouped_and_different_tweets_are_not():
    texts = ["omg I love this new phone!!! http://t.co/x", "the bus is late again this morning",
             "omg i love this new phone", "@ann omg I love this neww phone :)", "I hate this new phone so much",
             "the meeting moved to friday afternoon", "lol"]
    assert near_duplicate_groups(texts) == [[0, 2, 3]]


def test_train_rows_that_nearly_copy_a_test_tweet():
    train = ["Happy Mother`s Day !", "my cat knocked over the plant", "going to the gym after work today"]
    test = ["Happy Mothers Day!!!", "nothing in common with the others at all"]
    assert near_copies(train, test) == {0: 0}


def test_resolve_keeps_the_majority_and_drops_groups_people_disagree_on():
    groups = [[0, 1, 2], [3, 4], [5, 6]]
    labels = [1, 2, 2, 0, 2, 1, 1]
    drop, conflicts = resolve(groups, labels)
    assert drop == {0, 2, 3, 4, 6} and conflicts == 2  # row 1 is the first majority row; 3/4 tie: both go


def test_near_identical_rows_are_checked_in_pairs_that_grow_with_the_rows_not_their_square(monkeypatch):
    """30,000 distinct but near-identical rows (the upload that once took 22 GB): one group, every train
    row a copy of a test row, and the pairs checked stay a few dozen per row."""
    import random

    from finetune import neardup

    checked, confirmed = [0], neardup._confirmed

    def counting(norm, pairs):
        checked[0] += len(pairs)
        return confirmed(norm, pairs)
    monkeypatch.setattr(neardup, "_confirmed", counting)
    rng = random.Random(0)
    rows = [f"so happy today love it {i:05d} {rng.choice('abcdefgh')}" for i in range(3_000)]
    groups, copies = neardup.find(rows[:2_400], rows[2_400:])
    assert groups == [list(range(2_400))] and len(copies) > 2_000
    assert checked[0] <= 3_000 * 2 * neardup.NEIGHBOURS * 3  # a dense bucket's pairs would be 4.5 million
