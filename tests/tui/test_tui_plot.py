"""The loss plot's views (log scale, smoothing, follow), its learning-rate strip and x ticks, from
the Checkpoints tab (keys on the pane) and the Train tab (keys on the focused plot)."""

from __future__ import annotations

import math

from minigpt_tui.tui.app import MiniGPTApp
from minigpt_tui.tui.widgets.chart import ema, fmt_steps, x_axis
from minigpt_tui.tui.widgets.loss_plot import LossPlot

from kit import PINNED_TIME, make_fake_run
from tui_helpers import wait_for


def drawn(plot: LossPlot, width: int = 60, height: int = 16) -> str:
    return plot._draw(width, height).plain


async def test_log_smooth_and_follow_change_what_the_plot_draws(tui_home):
    make_fake_run(tui_home, "run", created=PINNED_TIME, step=400)
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        plot = app.query_one("#run-plot", LossPlot)
        assert await wait_for(pilot, lambda: plot.train and plot.lr)
        # The keys are the tab's (the table has the focus) and show in the footer.
        assert {"l", "m", "f"} <= set(app.screen.active_bindings)
        plain = drawn(plot)
        lines = plain.splitlines()
        assert lines[-1].split() == ["0", "100", "200", "300", "400"]  # ticks between the ends
        assert "━ lr" in lines[0] and lines[-2].strip().startswith("lr")  # the learning-rate strip
        assert "[" not in lines[0]  # no view is on

        await pilot.press("l")
        assert plot.log_y and "[log]" in drawn(plot)
        log_labels = [line.split("┤")[0].strip() for line in drawn(plot).splitlines() if "┤" in line]
        assert log_labels != [line.split("┤")[0].strip() for line in lines if "┤" in line]
        await pilot.press("l")
        assert drawn(plot) == plain  # off again: as before

        await pilot.press("m")
        assert plot.smooth and "[smooth]" in drawn(plot)
        curves = dict(plot.curves())
        assert curves["train-faint"] is plot.train  # the raw curve stays, faint, behind
        raw = [v for _, v in plot.train]
        assert [round(v, 6) for _, v in curves["train"]] == [round(v, 6) for v in ema(raw, 0.9)]
        await pilot.press("m")

        await pilot.press("f")
        assert plot.follow
        followed = drawn(plot).splitlines()
        assert followed[-1].split()[0] == "280"  # the last 30% of the steps
        top = float(followed[1].split("┤")[0])
        assert top < math.log(65)  # fitted to the recent curve, no longer anchored at ln V
        assert "[follow]" in followed[0]


async def test_plot_keys_work_on_the_train_tabs_plot_when_it_has_the_focus():
    app = MiniGPTApp(save=False)
    async with app.run_test(size=(100, 30)) as pilot:
        plot = app.train.plot
        plot.set_data([(s, 4.0 - s / 500) for s in range(0, 1000, 10)], [(500, 3.1)], math.log(65), 1000)
        for s in range(0, 1000, 10):
            plot.add_lr(s, 1e-3)
        plot.focus()
        await pilot.pause()
        await pilot.press("l", "m", "f")
        assert plot.log_y and plot.smooth and plot.follow
        assert "[log smooth follow]" in drawn(plot)


def test_x_axis_ticks_fit_between_the_ends():
    assert x_axis(0, 400, 40, fmt_steps).split() == ["0", "100", "200", "300", "400"]
    assert x_axis(0, 1, 30, fmt_steps).split() == ["0", "1"]  # no "0" twice for ticks at half steps
    narrow = x_axis(0, 123_456, 12, fmt_steps)
    assert narrow.split() == ["0", "123k"] and len(narrow) == 12
