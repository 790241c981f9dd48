"""Colours drawn in Python (loss plots, confidence shading, the odds panel, the status line)
come from the theme, so the command palette's "Change theme" recolours them as it does the CSS."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

from minigpt_tui.tui.app import MiniGPTApp
from minigpt_tui.tui.palette import colour
from minigpt_tui.tui.widgets.loss_plot import LossPlot

from tui_helpers import focus_id, wait_for, wait_loaded


def colours(text: Text) -> set[str]:
    """The foreground colours of a Rich Text's spans, as #rrggbb."""
    found = set()
    for span in text.spans:
        style = Style.parse(span.style) if isinstance(span.style, str) else span.style
        if style.color is not None and style.color.triplet is not None:
            found.add(style.color.triplet.hex.upper())
    return found


def stream_colours(app) -> set[str]:
    view = app.generate.output
    found = set()
    for y in range(len(view._row_index)):
        for segment in view.render_line(y):
            if segment.style is not None and segment.style.color is not None and segment.style.color.triplet:
                found.add(segment.style.color.triplet.hex.upper())
    return found


async def test_changing_the_theme_recolours_plots_confidence_and_status(tiny_run):
    app = MiniGPTApp(run=tiny_run, save=False)
    async with app.run_test(size=(100, 30)) as pilot:
        app.theme = "textual-dark"
        await pilot.pause()
        plot = app.query_one("#run-plot", LossPlot)
        plot.set_data([(0, 4.0), (50, 2.5), (100, 2.0)], [(50, 2.6), (100, 2.2)], 4.2, 100)
        dark_plot = colours(plot._draw(40, 12))
        assert {colour(app, role).upper() for role in ("train", "val", "muted")} <= dark_plot

        await wait_loaded(pilot, app, max_new_tokens=100_000)  # (the tiny trained run; Esc ends the reply)
        assert await wait_for(pilot, lambda: focus_id(app) == "prompt")
        await pilot.press("escape", "v")  # leave the prompt; confidence colours on
        assert app.generate.output.confidence
        app.generate.generate("And")
        assert await wait_for(pilot, lambda: len(app.generate.output.text) > 20)
        await pilot.press("escape")  # stop: the status line says "stopped" in the warning colour
        assert await wait_for(pilot, lambda: not app.generate.generating and app.generate.stopped)
        await pilot.pause()
        dark_stream = stream_colours(app)
        dark_panel = colours(app.query_one("#alternatives").render())
        dark_status = colours(app.query_one("#gen-status").render())
        assert colour(app, "confidence-0").upper() in dark_panel | dark_stream
        assert colour(app, "warn").upper() in dark_status

        app.theme = "nord"  # as the command palette's "Change theme" does
        assert await wait_for(pilot, lambda: stream_colours(app) != dark_stream)
        await pilot.pause()
        nord_stream = stream_colours(app)
        nord_panel = colours(app.query_one("#alternatives").render())
        nord_status = colours(app.query_one("#gen-status").render())
        nord_plot = colours(plot._draw(40, 12))
        assert nord_stream and not nord_stream & dark_stream
        assert nord_panel != dark_panel and colour(app, "confidence-3").upper() in nord_panel
        assert colour(app, "warn").upper() in nord_status and nord_status != dark_status
        assert {colour(app, role).upper() for role in ("train", "val", "muted")} <= nord_plot
        assert nord_plot != dark_plot
