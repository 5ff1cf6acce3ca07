import pytest

from tether.core.registry import Registry

CELL = '''
@REG.register("my_reward")
def my_reward(batch):
    return {version}
'''


def test_rerunning_a_notebook_cell_reregisters_the_same_definition():
    reg = Registry("reward")
    ns = {"REG": reg, "__name__": "__main__"}
    exec(CELL.format(version=1), ns)
    exec(CELL.format(version=2), ns)          # the cell edited and run again: the new body wins
    assert reg.get("my_reward")(None) == 2 and reg.names() == ["my_reward"]


def test_a_different_function_under_a_taken_name_is_refused():
    reg = Registry("reward")

    @reg.register("r")
    def first(batch):
        return 0

    def second(batch):
        return 1

    reg.register("r")(first)                  # the same object: fine
    with pytest.raises(ValueError, match="'r' is already registered"):
        reg.register("r")(second)


def test_unknown_names_list_the_known_ones_and_bad_names_are_refused():
    reg = Registry("loss")
    reg.register("a")(lambda: None)
    with pytest.raises(KeyError, match="'b'.*a"):
        reg.get("b")
    with pytest.raises(ValueError, match="lowercase"):
        reg.register("Bad Name")
