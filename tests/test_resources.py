"""Peak memory is measured per run where the OS allows resetting it."""

import numpy as np
import pytest

from recbench.resources import peak_rss_mb, reset_peak_rss


def test_peak_rss_window_resets_between_runs():
    if not reset_peak_rss():
        pytest.skip("this OS cannot reset the peak RSS (the process peak is reported instead)")
    block = np.ones(300 * 2**20 // 8)  # ~300 MiB, touched
    high = peak_rss_mb()
    del block
    assert reset_peak_rss()
    low = peak_rss_mb()
    assert high - low > 200, (high, low)
