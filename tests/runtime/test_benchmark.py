"""``tadp benchmark hotswap``'s measuring loop on a tiny model: every operation is found in the
frames that carry it (a replace only by frames of the *new* version), the timing parts add up,
the base tasks stay bit-identical and the corrupt bundle is refused. Timings are printed, never
asserted against a budget (benchmarks own those)."""
from __future__ import annotations

from perception.runtime.benchmark import hotswap_loop, temp_bundles
from perception.runtime.engine import PerceptionEngine

from .conftest import make_model


def test_hotswap_loop_finds_each_operation_in_the_frames(cache_dir, frames) -> None:
    model = make_model()
    tmp, bundles = temp_bundles(model)
    with tmp:
        engine = PerceptionEngine(make_model(), "onnxruntime", cache_dir=cache_dir)
        rep = hotswap_loop(engine, frames[0], bundles, rate_hz=20.0, cycles=2, settle_s=0.3)
    print(rep.operations)
    ops = [o["operation"] for o in rep.operations]
    assert ops == ["add", "replace", "remove", "add", "replace", "remove", "add corrupt"]
    for o in rep.operations[:-1]:
        assert o["ok"], o
        assert o["to_first_frame_ms"] >= o["call_ms"] + o["clock_wait_ms"] - 1e-6, o
        if o["operation"] == "remove":
            assert o["first_output_ms"] is None, o
        else:  # the new task's output on the latest frame came back with the call
            assert o["first_output_ms"] == o["call_ms"], o
            assert 0 <= o["first_output_frame_age_ms"] < 10_000, o
    assert not rep.operations[-1]["ok"] and "corrupt" in rep.operations[-1]["message"]
    assert rep.others_identical and rep.frames > 0
    assert len(rep.rss_cycles_mb) == 2 and rep.rss_warm_mb == rep.rss_cycles_mb[0] > 0
    assert engine.tasks == ["segmentation", "depth", "drivable", "lanes"]
