"""Makes the workshop's screenshots from a real run: the live view's last frame and a
frame mid-run, and the top of the report, as small PNGs in docs/img/.

    python3 docs/img/make_screenshots.py            # from the repository root; needs Docker,
                                                    # Debian's chromium and a CJK font
                                                    # (fonts-wqy-microhei); about 2 minutes

It runs `novel` on Docker under the ci profile (0.5 cpu, 256 MiB) for 80 s, records the
live view (rich) as SVG, and has headless Chromium photograph the SVGs and the report.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from sim.lab.runner import Experiment, RunConfig  # noqa: E402
from sim.lab.view import LiveView  # noqa: E402

OUT = ROOT / "docs" / "img"
DURATION = 80.0
MID_AFTER_S = 1.5  # the mid-run frame: this long after the first guard fires


def snap(console_svg: str, png: Path, width: int, height: int) -> None:
    """Headless Chromium photographs an SVG (or HTML) file; the PNG is then quantized."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / ("page.svg" if console_svg.lstrip().startswith("<svg") else "page.html")
        src.write_text(console_svg, encoding="utf-8")
        shot = Path(tmp) / "shot.png"
        subprocess.run([shutil.which("chromium") or "chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
                        f"--user-data-dir={tmp}/profile", f"--window-size={width},{height}",
                        f"--screenshot={shot}", src.as_uri()], check=True, capture_output=True, timeout=120)
        small(shot, png)


def small(src: Path, dest: Path) -> None:
    from PIL import Image

    img = Image.open(src).convert("RGB")
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(dest, optimize=True)


def frame(view: LiveView, title: str) -> str:
    c = Console(record=True, width=104, file=io.StringIO(), force_terminal=True, color_system="truecolor")
    c.print(view.render())
    return c.export_svg(title=title)


class RecordedView(LiveView):
    """The live view, photographed once mid-run: shortly after the first guard fires."""

    mid_svg: str | None = None

    def update(self, rec: object) -> None:
        super().update(rec)
        if getattr(rec, "state", None) == "firing" and self.mid_svg is None:
            self.mid_svg = ""
            asyncio.get_running_loop().call_later(MID_AFTER_S, self._snap)

    def _snap(self) -> None:
        self.mid_svg = frame(self, "runaway run novel (mid-run)")


async def main() -> None:
    runs = Path(tempfile.mkdtemp(prefix="runaway-shots-"))
    console = Console(record=True, width=104, file=io.StringIO(), force_terminal=True, color_system="truecolor")
    view = RecordedView(DURATION, console=console)
    cfg = RunConfig(scenario="novel", backend="docker", profile="ci", duration=DURATION, metrics_port=None,
                    out=runs / "novel", live=True)
    res = await Experiment(cfg, view=view).run()
    if view.mid_svg:
        snap(view.mid_svg, OUT / "live-view-mid.png", 900, 760)
    end = Console(record=True, width=104, file=io.StringIO(), force_terminal=True, color_system="truecolor")
    end.print(view.render())
    end.print("")
    end.print(res.summary["headline"], highlight=False)
    snap(end.export_svg(title="runaway run novel (the end)"), OUT / "live-view-end.png", 900, 800)
    snap((res.out / "report.html").read_text(encoding="utf-8").replace(
        "<head>", f'<head><base href="{res.out.as_uri()}/">'), OUT / "report-top.png", 1100, 1500)
    print(res.summary["headline"])
    print(f"run kept in {res.out}")


if __name__ == "__main__":
    asyncio.run(main())
