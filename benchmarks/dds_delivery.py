"""Do large camera images arrive over DDS? Delivery and latency between two processes (issue 7, item 4).

Each trial starts a fresh subscriber process and a fresh publisher process (so each can load its
own Fast DDS profile before ``rclpy.init()``) on a random ``ROS_DOMAIN_ID`` with
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``. The publisher waits until the subscription is
matched, then sends ``--frames`` 1280x720 frames (a real BDD100K frame, raw ``bgr8`` or JPEG
``CompressedImage``) at ``--rates`` Hz, stamping each with the wall clock; the subscriber counts
distinct frames and the latency ``receive time - stamp``.

Usage::

    python benchmarks/dds_delivery.py                         # the full table (~10 min on 2 cores)
    python benchmarks/dds_delivery.py --qos rel-rel --profiles default tad --rates 10 --frames 50

Output: a Markdown table, QoS x profile x payload x rate -> delivered/sent, latency p50/p90.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOPIC = "/camera/image"

# Publisher side: what camera drivers do. "rel" = RELIABLE KEEP_LAST 10 (rclpy/image_transport
# default), "be" = BEST_EFFORT KEEP_LAST 5 (qos_profile_sensor_data). Subscriber side: our
# camera_qos() with the given reliability and depth (--sub-depth).
QOS_COMBOS = {
    "rel-rel": ("reliable", "reliable"),
    "be-be": ("best_effort", "best_effort"),
    "rel-be": ("reliable", "best_effort"),
}
# Where the profile is applied: "both" processes, or only the subscriber ("sub": a camera driver
# started without it, our node applying its own profile).
PROFILES = {
    "default": None,  # Fast DDS built-in transports: SHM 0.5 MB segment + UDPv4
    "shm16": {"segment_size_mb": 16, "udp_buffer_kb": None},  # the 16 MB segment
    "large_data": "LARGE_DATA",  # FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA (UDP discovery, TCP/SHM data)
    "tad": "shipped",  # ros2_nodes/fastdds_profile.xml via ros2_nodes.qos.apply_fastdds_profile
}


@dataclass
class Trial:
    qos: str
    profile: str
    payload: str  # "raw" | "compressed"
    rate_hz: float
    frames: int
    profile_on: str = "both"  # "both" | "sub" | "pub"
    sub_depth: int = 3  # KEEP_LAST depth of the subscription (ros2_nodes.qos.DEFAULT_CAMERA_DEPTH)


@dataclass
class TrialResult:
    trial: Trial
    sent: int
    delivered: int
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    error: str = ""

    @property
    def ratio(self) -> float:
        return self.delivered / self.sent if self.sent else 0.0


def _default_image() -> Path | None:
    root = Path(os.environ.get("TADP_REAL_DATA", REPO.parent / "shared" / "data" / "real"))
    found = sorted((root / "yolop_bdd100k").rglob("*.jpg"))
    return found[0] if found else None


def _load_frame(path: str | None):
    import cv2
    import numpy as np

    if path:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is not None:
            return cv2.resize(image, (1280, 720)) if image.shape[:2] != (720, 1280) else image
    # No real frame available: textured synthetic frame (JPEG size stays realistic).
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)


def profile_env(profile: str, tmpdir: Path) -> dict[str, str]:
    """Environment variables that apply ``profile`` to a process."""
    spec = PROFILES[profile]
    if spec is None:
        return {}
    if spec == "LARGE_DATA":
        return {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    from ros2_nodes.qos import apply_fastdds_profile, fastdds_profile_xml

    env: dict[str, str] = {}
    if spec == "shipped":
        apply_fastdds_profile(env, override=True)
        return env
    path = tmpdir / f"{profile}.xml"
    path.write_text(fastdds_profile_xml(**spec))
    apply_fastdds_profile(env, path=path, override=True)
    return env


# --- child processes ------------------------------------------------------------------------


def _run_publisher(args: argparse.Namespace) -> None:
    import rclpy
    from sensor_msgs.msg import CompressedImage, Image

    from ros2_nodes.convert import compressed_to_msg, image_to_msg

    frame = _load_frame(args.image)
    rclpy.init()
    node = rclpy.create_node("dds_delivery_pub")
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    if args.reliability == "reliable":
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    else:
        qos = qos_profile_sensor_data
    if args.payload == "raw":
        msg, msg_type = image_to_msg(frame, "bgr8"), Image
    else:
        msg, msg_type = compressed_to_msg(frame, fmt="jpeg", quality=90), CompressedImage
    pub = node.create_publisher(msg_type, TOPIC, qos)
    deadline = time.monotonic() + args.match_timeout_s
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    matched = pub.get_subscription_count() > 0
    time.sleep(0.3)  # let the reader side finish matching too
    sent = 0
    if matched:
        period = 1.0 / args.rate
        t0 = time.monotonic()
        for i in range(args.frames):
            delay = t0 + i * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now_ns = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now_ns, 1_000_000_000)
            msg.header.frame_id = str(i)
            pub.publish(msg)
            sent += 1
        time.sleep(args.linger_s)  # reliable repairs still in flight
    print(json.dumps({"sent": sent, "matched": matched, "bytes": len(msg.data)}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def _run_subscriber(args: argparse.Namespace) -> None:
    import rclpy
    from sensor_msgs.msg import CompressedImage, Image

    from ros2_nodes.qos import camera_qos

    stop = threading.Event()

    def _wait_stdin() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=_wait_stdin, daemon=True).start()
    rclpy.init()
    node = rclpy.create_node("dds_delivery_sub")
    seen: dict[int, int] = {}

    def _on_msg(msg) -> None:
        now_ns = time.time_ns()
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        seen.setdefault(int(msg.header.frame_id), now_ns - stamp_ns)

    msg_type = Image if args.payload == "raw" else CompressedImage
    node.create_subscription(msg_type, TOPIC, _on_msg, camera_qos(args.reliability, args.depth))
    print("ready", flush=True)
    deadline = time.monotonic() + args.max_s
    while not stop.is_set() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(json.dumps({"latencies_ns": sorted(seen.values()), "delivered": len(seen)}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


# --- driver ---------------------------------------------------------------------------------


def _percentile_ms(values: list[int], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] / 1e6


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"child printed no result; output was:\n{text[-2000:]}")


def run_trial(trial: Trial, *, image: str | None = None, domain_id: int | None = None) -> TrialResult:
    """Run one publisher/subscriber pair in two fresh processes and count what arrived."""
    pub_rel, sub_rel = QOS_COMBOS[trial.qos]
    domain = domain_id if domain_id is not None else random.randint(1, 101)
    image = image or (str(p) if (p := _default_image()) else "")
    with tempfile.TemporaryDirectory(prefix="dds_delivery_") as tmp:
        base = dict(os.environ)
        for var in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS", "RMW_FASTRTPS_USE_QOS_FROM_XML"):
            base.pop(var, None)
        base.update(
            ROS_DOMAIN_ID=str(domain),
            ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
            RMW_IMPLEMENTATION="rmw_fastrtps_cpp",
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), base.get("PYTHONPATH", "")])),
        )
        extra = profile_env(trial.profile, Path(tmp))
        sub_env = {**base, **(extra if trial.profile_on in ("both", "sub") else {})}
        pub_env = {**base, **(extra if trial.profile_on in ("both", "pub") else {})}
        script = [sys.executable, str(Path(__file__).resolve())]
        common = ["--payload", trial.payload]
        budget_s = trial.frames / trial.rate_hz + 30.0
        sub = subprocess.Popen(
            [*script, "_sub", *common, "--reliability", sub_rel, "--depth", str(trial.sub_depth),
             "--max-s", str(budget_s)],
            env=sub_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            ready = sub.stdout.readline()
            if ready.strip() != "ready":
                raise RuntimeError(f"subscriber failed to start: {ready}{sub.stdout.read()}")
            pub = subprocess.run(
                [*script, "_pub", *common, "--reliability", pub_rel, "--rate", str(trial.rate_hz),
                 "--frames", str(trial.frames), "--image", image],
                env=pub_env, capture_output=True, text=True, timeout=budget_s,
            )
            pub_out = _last_json(pub.stdout + pub.stderr)
            time.sleep(0.5)
            out, _ = sub.communicate("stop\n", timeout=30)
            sub_out = _last_json(out)
        except Exception as err:  # report the failure in the table instead of aborting the sweep
            sub.kill()
            sub.wait()
            return TrialResult(trial, 0, 0, None, None, error=f"{type(err).__name__}: {err}"[:300])
    lat = sub_out["latencies_ns"]
    error = "" if pub_out["matched"] else "not matched (incompatible QoS or discovery failure)"
    return TrialResult(trial, pub_out["sent"], sub_out["delivered"], _percentile_ms(lat, 0.5), _percentile_ms(lat, 0.9), error)


def markdown_table(results: list[TrialResult]) -> str:
    lines = [
        "| pub -> sub QoS | profile (on) | payload | rate Hz | delivered/sent | % | latency p50 ms | p90 ms | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t = r.trial
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        lines.append(
            f"| {t.qos} | {t.profile} ({t.profile_on}) | {t.payload} | {t.rate_hz:g} | {r.delivered}/{r.sent} | "
            f"{100 * r.ratio:.0f} | {fmt(r.latency_p50_ms)} | {fmt(r.latency_p90_ms)} | {r.error} |"
        )
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="role")
    for role in ("_pub", "_sub"):
        p = sub.add_parser(role)
        p.add_argument("--payload", choices=("raw", "compressed"), default="raw")
        p.add_argument("--reliability", choices=("reliable", "best_effort"), default="reliable")
        p.add_argument("--depth", type=int, default=3)
        p.add_argument("--rate", type=float, default=30.0)
        p.add_argument("--frames", type=int, default=100)
        p.add_argument("--image", default="")
        p.add_argument("--max-s", type=float, default=60.0)
        p.add_argument("--match-timeout-s", type=float, default=15.0)
        p.add_argument("--linger-s", type=float, default=1.0)
    parser.add_argument("--qos", nargs="+", default=list(QOS_COMBOS), choices=list(QOS_COMBOS))
    parser.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=list(PROFILES))
    parser.add_argument("--profile-on", nargs="+", default=["both"], choices=("both", "sub", "pub"))
    parser.add_argument("--payloads", nargs="+", default=["raw", "compressed"], choices=("raw", "compressed"))
    parser.add_argument("--rates", nargs="+", type=float, default=[10.0, 30.0])
    parser.add_argument("--frames", type=int, default=150, help="frames per trial")
    parser.add_argument("--sub-depth", type=int, default=3, help="subscription KEEP_LAST depth")
    parser.add_argument("--image", default=None, help="frame to send (default: a BDD100K frame from real data)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.role == "_pub":
        _run_publisher(args)
        return 0
    if args.role == "_sub":
        _run_subscriber(args)
        return 0
    results = []
    for payload in args.payloads:
        for rate in args.rates:
            for qos in args.qos:
                for profile in args.profiles:
                    for where in args.profile_on if profile != "default" else ["both"]:
                        trial = Trial(qos, profile, payload, rate, args.frames, where, args.sub_depth)
                        result = run_trial(trial, image=args.image)
                        results.append(result)
                        print(markdown_table([result]).splitlines()[-1], file=sys.stderr, flush=True)
    print(markdown_table(results))
    if args.json:
        args.json.write_text(json.dumps([{**asdict(r.trial), **asdict(r) | {"trial": None}} for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
