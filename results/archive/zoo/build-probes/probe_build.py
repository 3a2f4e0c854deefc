"""Device probe: where a zoo build's time goes. Sequential builds in one process, plus a concurrency test.
usage: python probe_build.py OUTDIR ONNX_MOBILENET ONNX_ENCODER"""
import json, os, re, sys, time, subprocess
from pathlib import Path
from refit_core.trt.cuda import CudaSession
from refit_core.trt import compat, engine as eng
from refit_core.trt.engine import BuildOptions, build_plan_from_onnx

OUT = Path(sys.argv[1]); OUT.mkdir(parents=True, exist_ok=True)
MNV, ENC = Path(sys.argv[2]), Path(sys.argv[3])
DEADLINE = time.time() + float(os.environ.get("PROBE_S", "400"))
ver = compat.trt_version()
res = {"trt": compat.trt_version_string(), "builds": []}
sess = CudaSession()
TIMED = re.compile(r"Tactic.*Time", re.I)
trt = compat.import_tensorrt()


class CountingLogger(trt.ILogger):
    def __init__(self):
        trt.ILogger.__init__(self)
        self.timed = 0
        self.errors = []

    def log(self, severity, msg):
        if TIMED.search(msg):
            self.timed += 1
        if str(severity).split(".")[-1] in ("ERROR", "INTERNAL_ERROR"):
            self.errors.append(msg)
            print("[TRT E]", msg, flush=True)

    def mark(self):
        return len(self.errors)

    def errors_since(self, mark):
        return self.errors[mark:]


logger = CountingLogger()

_orig_configure = eng._configure
_orig_sources = compat.apply_tactic_sources
knobs = {}


def configure(builder, options, profiles):
    config = _orig_configure(builder, options, profiles)
    if "opt_level" in knobs:
        config.builder_optimization_level = knobs["opt_level"]
    if knobs.get("no_jit"):
        trt = compat.import_tensorrt()
        mask = int(config.get_tactic_sources()) & ~(1 << int(trt.TacticSource.JIT_CONVOLUTIONS))
        config.set_tactic_sources(mask)
    if knobs.get("no_edge"):
        trt = compat.import_tensorrt()
        mask = int(config.get_tactic_sources()) & ~(1 << int(trt.TacticSource.EDGE_MASK_CONVOLUTIONS))
        config.set_tactic_sources(mask)
    if "avg" in knobs:
        config.avg_timing_iterations = knobs["avg"]
    return config


eng._configure = configure


def build(label, path, precision, refit, tc=None, **kw):
    if time.time() > DEADLINE:
        print(label, "skipped (deadline)", flush=True)
        return None
    knobs.clear(); knobs.update(kw)
    mark = logger.timed
    try:
        r = build_plan_from_onnx(path, BuildOptions(refit=refit, precision=precision), [], logger, timing_cache=tc)
    except Exception as exc:
        print(label, "FAILED", exc, flush=True)
        res["builds"].append({"label": label, "error": str(exc)[:300]})
        return None
    timed = logger.timed - mark
    row = {"label": label, "s": round(r.seconds, 2), "tactics_timed": timed, "tc_accepted": r.timing_cache_accepted,
           "plan_bytes": len(r.plan)}
    print(json.dumps(row), flush=True)
    res["builds"].append(row)
    (OUT / "probe-build.json").write_text(json.dumps(res, indent=1))
    return r


if len(sys.argv) > 4 and sys.argv[4] == "one":  # a child of the concurrency test
    build(f"concurrent {sys.argv[5]}", MNV, sys.argv[5], True)
    sys.exit(0)

a = build("mnv fp16 REFIT cold", MNV, "fp16", True)
if a:
    build("mnv fp16 plain, TC from REFIT", MNV, "fp16", False, tc=a.timing_cache)
    build("mnv fp16 REFIT again, TC from REFIT", MNV, "fp16", True, tc=a.timing_cache)
build("mnv fp16 plain cold", MNV, "fp16", False)
if ver >= (8, 6):
    build("mnv fp16 REFIT opt level 1", MNV, "fp16", True, opt_level=1)
    build("mnv fp16 REFIT opt level 2", MNV, "fp16", True, opt_level=2)
build("mnv fp16 REFIT no JIT conv", MNV, "fp16", True, no_jit=True)
b = build("mnv fp32 REFIT cold", MNV, "fp32", True)
if b:
    build("mnv fp16 REFIT, TC from fp32 REFIT", MNV, "fp16", True, tc=b.timing_cache)
build("mnv tf32 REFIT cold", MNV, "tf32", True)
build("enc fp16 REFIT cold", ENC, "fp16", True)
build("enc fp32 REFIT cold", ENC, "fp32", True)
# concurrency: three fp32 REFIT builds at once, each in its own process
if time.time() < DEADLINE - 60:
    t0 = time.time()
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, __file__, str(OUT / f"c{i}"), str(MNV), str(ENC), "one", "fp32"],
                              stdout=subprocess.PIPE, text=True, env=env) for i in range(3)]
    outs = [p.communicate()[0].strip() for p in procs]
    res["concurrent3_fp32_refit_wall_s"] = round(time.time() - t0, 1)
    res["concurrent3_rows"] = outs
    print("3 concurrent fp32 REFIT builds:", res["concurrent3_fp32_refit_wall_s"], "s wall", outs, flush=True)
(OUT / "probe-build.json").write_text(json.dumps(res, indent=1))
sess.close()
print("done", flush=True)
