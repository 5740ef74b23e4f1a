from tunelab.duplicates import first_of_each


def test_first_of_each_keeps_first_occurrences_in_order_and_pairs_every_repeat_with_its_first():
    assert first_of_each(["a", "b", "a", "c", "b", "a"]) == ([0, 1, 3], [(2, 0), (4, 1), (5, 0)])
    assert first_of_each([]) == ([], [])
