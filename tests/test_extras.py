"""One install per tier: a missing extra is one line naming its pip command, never a traceback.

The core install (no extras) must build the command line and import the tabular and policy-gradient
tiers without touching transformers; each optional package, when absent, becomes ``MissingExtra``
whose message names ``pip install 'rlcode[EXTRA]'``, and ``rlcode`` prints that line and exits 2.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rlcode.cli.app import main
from rlcode.extras import MissingExtra, as_missing_extra, missing_extra, require

LM_LINE = (
    "the language-model tier needs transformers, which is not installed; "
    "install it with: pip install 'rlcode[lm]'"
)
LM_MODULES = ("transformers", "tokenizers", "accelerate", "huggingface_hub", "peft")


def _block(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``import MODULE`` raise ModuleNotFoundError, as if it were not installed."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_require_returns_the_module_or_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert require("json").dumps([1]) == "[1]"
    _block(monkeypatch, "transformers")
    with pytest.raises(MissingExtra) as info:
        require("transformers", "lm", "the language-model tier")
    assert str(info.value) == LM_LINE
    assert isinstance(info.value, ImportError) and isinstance(info.value, RuntimeError)  # both, as before
    assert info.value.name == "transformers" and info.value.extra == "lm"
    assert info.value.__suppress_context__  # no "During handling of the above exception" chain


def test_an_import_error_inside_an_installed_package_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the package itself missing becomes MissingExtra; a broken install keeps its own error."""

    class Broken:
        def find_spec(self, name: str, path: object = None, target: object = None) -> None:
            if name == "rlcode_fake_pkg":
                raise ModuleNotFoundError("No module named 'some_dependency'", name="some_dependency")

    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    with pytest.raises(ModuleNotFoundError) as info:
        require("rlcode_fake_pkg", "lm")
    assert not isinstance(info.value, MissingExtra) and info.value.name == "some_dependency"


def test_known_module_errors_map_to_their_extra() -> None:
    error = as_missing_extra(ModuleNotFoundError("No module named 'matplotlib.pyplot'", name="matplotlib.pyplot"))
    assert error is not None and str(error).endswith("pip install 'rlcode[plots]'")
    assert as_missing_extra(ModuleNotFoundError("No module named 'nope'", name="nope")) is None
    assert as_missing_extra(ValueError("x")) is None
    assert "needs imageio-ffmpeg" in str(missing_extra("imageio_ffmpeg"))  # pip's name, not the module's


def test_rlhf_names_without_transformers_raise_the_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    _block(monkeypatch, "transformers")
    with pytest.raises(ImportError) as info:
        from rlcode.rlhf import PPOTrainer  # noqa: F401
    assert str(info.value) == LM_LINE
    monkeypatch.delitem(sys.modules, "rlcode.rlhf.demo", raising=False)  # import it afresh, not from cache
    with pytest.raises(ImportError, match=r"pip install 'rlcode\[lm\]'"):
        from rlcode.rlhf.demo import run_demo  # noqa: F401


def test_rlhf_demo_command_without_transformers_prints_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _block(monkeypatch, "transformers")
    monkeypatch.delitem(sys.modules, "rlcode.rlhf.demo", raising=False)
    assert main(["rlhf-demo", "--out", str(tmp_path / "demo"), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert _one_line(captured.err) == f"rlcode: error: {LM_LINE}" and captured.out == ""
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize(
    ("flag", "module", "extra"),
    [("--tensorboard", "tensorboard", "tensorboard"), ("--wandb-project=p", "wandb", "wandb")],
)
def test_train_logger_flags_without_their_package_fail_before_work(
    flag: str, module: str, extra: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _block(monkeypatch, module)
    run_dir = tmp_path / "run"
    assert main(["train", "qlearning", "--episodes", "10", flag, "--run-dir", str(run_dir), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("rlcode: error: ") and line.endswith(f"install it with: pip install 'rlcode[{extra}]'")
    assert not run_dir.exists()


def _call_plots() -> None:
    from rlcode.run.plots import load_pyplot

    load_pyplot()


def _call_video() -> None:
    from rlcode.run.video import _check_writer

    _check_writer(".mp4")


def _call_gif() -> None:
    from rlcode.run.video import _check_writer

    _check_writer(".gif")


def _call_tensorboard() -> None:
    from rlcode.run.metrics import _tensorboard_writer

    _tensorboard_writer(Path("unused"))


def _call_ray() -> None:
    from rlcode.sweeps.backends import require_ray

    require_ray()


@pytest.mark.parametrize(
    ("call", "modules", "extra"),
    [
        (_call_plots, ("matplotlib",), "plots"),
        (_call_video, ("imageio",), "video"),
        (_call_gif, ("PIL", "PIL.Image"), "video"),  # PIL.Image may be loaded already
        (_call_tensorboard, ("tensorboard",), "tensorboard"),
        (_call_ray, ("ray",), "ray"),
    ],
)
def test_every_optional_import_names_its_extra(call, modules: tuple[str, ...], extra: str, monkeypatch) -> None:
    _block(monkeypatch, *modules)
    with pytest.raises(MissingExtra) as info:
        call()
    message = _one_line(str(info.value))
    assert message.endswith(f"install it with: pip install 'rlcode[{extra}]'") and info.value.extra == extra


def test_a_stray_import_error_of_an_optional_package_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI's safety net: an optional package imported without ``require`` still gives the line."""
    import rlcode.run.plots

    def plot_runs(*args: object, **kwargs: object) -> None:
        raise ModuleNotFoundError("No module named 'matplotlib.pyplot'", name="matplotlib.pyplot")

    monkeypatch.setattr(rlcode.run.plots, "plot_runs", plot_runs)
    assert main(["plot", str(tmp_path)]) == 2
    assert _one_line(capsys.readouterr().err).endswith("pip install 'rlcode[plots]'")

    def other(*args: object, **kwargs: object) -> None:
        raise ModuleNotFoundError("No module named 'nope'", name="nope")

    monkeypatch.setattr(rlcode.run.plots, "plot_runs", other)
    with pytest.raises(ModuleNotFoundError, match="nope"):  # a real bug keeps its traceback
        main(["plot", str(tmp_path)])


def test_tour_without_the_lm_extra_runs_the_rest_and_names_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import rlcode.cli.tour

    def fake(tier: str):
        return lambda *args: {"tier": tier, "task": rlcode.cli.tour.TASKS[tier], "result": "ok", "passed": True}

    monkeypatch.setattr(rlcode.cli.tour, "_tabular", fake("tabular"))
    monkeypatch.setattr(rlcode.cli.tour, "_ppo", fake("policy gradient"))
    _block(monkeypatch, "transformers")
    assert main(["tour", "--out", str(tmp_path)]) == 0  # a skipped part is not a failed one
    out = capsys.readouterr().out
    assert f"skipped: {LM_LINE}\n" in out
    assert out.count("reached") == 2 and "missed" not in out and "rlcode[lm]" in out.split("rlcode tour")[-1]


CORE_ONLY = textwrap.dedent(
    """
    import sys

    BLOCKED = {blocked!r}

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

    sys.meta_path.insert(0, Refuse())
    import rlcode.cli.app
    import rlcode.policy_gradient.train
    import rlcode.tabular.train
    import rlcode.cli.tour

    rlcode.cli.app.build_parser()
    try:
        from rlcode.rlhf import PPOTrainer
    except ImportError as error:
        print("python:", error)
    code = rlcode.cli.app.main(["rlhf-demo", "--quiet"])
    print("exit:", code)
    print("loaded:", sorted(m for m in BLOCKED if m in sys.modules))
    """
)


def test_core_tiers_import_without_the_lm_packages() -> None:
    """A subprocess that refuses the lm extra's packages, as the core install would."""
    script = CORE_ONLY.format(blocked=LM_MODULES)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"python: {LM_LINE}", "exit: 2", "loaded: []"]
    assert done.stderr.strip() == f"rlcode: error: {LM_LINE}"


def test_help_imports_neither_torch_nor_transformers() -> None:
    script = "import sys, rlcode.cli.app; rlcode.cli.app.build_parser(); print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
