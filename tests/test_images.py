import numpy as np
import pytest

from tfgen import images


@pytest.mark.parametrize("shape, columns", [((64, 64, 64, 3), None), ((12, 16, 16, 1), 4), ((30, 28, 28, 1), 3)])
def test_grid_cells_reads_back_what_make_grid_drew(shape, columns):
    cells = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    grid = images.make_grid(cells, columns=columns)
    back = images.grid_cells(grid, shape[1])
    rows, cols = back.shape[:2]
    assert rows * cols == shape[0]
    assert cols == (columns or 8)
    np.testing.assert_array_equal(back.reshape(shape), cells)


def test_grid_cells_fills_the_gaps_of_a_part_empty_last_row_with_white():
    cells = np.zeros((10, 8, 8, 3), np.uint8)
    back = images.grid_cells(images.make_grid(cells, columns=4), 8)
    assert back.shape == (3, 4, 8, 8, 3)
    assert (back.reshape(12, -1)[:10] == 0).all() and (back.reshape(12, -1)[10:] == 255).all()


def test_grid_cells_of_a_grey_png_array_keeps_one_channel():
    cells = np.full((4, 8, 8, 1), 7, np.uint8)
    back = images.grid_cells(images.make_grid(cells)[..., 0], 8)
    assert back.shape == (2, 2, 8, 8, 1) and (back == 7).all()


def test_grid_cells_rejects_a_picture_of_other_geometry():
    grid = images.make_grid(np.zeros((16, 16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="not a grid of 20 px images"):
        images.grid_cells(grid, 20)


def test_grid_cells_never_reads_a_factor_that_leaves_no_room_for_a_cell():
    # 512 = 256 * (0 cells * 10 + 2): the largest factor fits the padding alone; the next one
    # that fits, 16 = 512 / (3 cells * 10 + 2), is read instead
    blank = np.full((512, 512, 3), 255, np.uint8)
    assert images.grid_cells(blank, 8).shape == (3, 3, 8, 8, 3)
