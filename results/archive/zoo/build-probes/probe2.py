"""Device probe 2: process start-up, first-build overhead, CUDA lazy loading, concurrency.
usage: python probe2.py OUTDIR MNV ENC            (driver)
       python probe2.py child MNV ENC SPEC...     (SPEC: model:precision:R|P[:tc])"""
import json, os, subprocess, sys, time
T0 = time.perf_counter()


def child(mnv, enc, specs):
    rows = []
    t = time.perf_counter()
    from refit_core.trt import compat
    from refit_core.trt.engine import BuildOptions, build_plan_from_onnx, trt_builder
    trt = compat.import_tensorrt()
    rows.append({"step": "import tensorrt", "s": round(time.perf_counter() - t, 2)})
    t = time.perf_counter()
    from refit_core.trt.cuda import CudaSession
    sess = CudaSession()
    rows.append({"step": "CUDA context", "s": round(time.perf_counter() - t, 2)})

    class L(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self); self.errors = []
        def log(self, sev, msg):
            if str(sev).split(".")[-1] in ("ERROR", "INTERNAL_ERROR"):
                self.errors.append(msg)
        def mark(self):
            return len(self.errors)
        def errors_since(self, m):
            return self.errors[m:]
    logger = L()
    t = time.perf_counter()
    b = trt_builder(logger); del b
    rows.append({"step": "first Builder", "s": round(time.perf_counter() - t, 2)})
    paths = {"mnv": mnv, "enc": enc}
    tcs = {}
    for spec in specs:
        model, prec, kind, *rest = spec.split(":")
        tc = tcs.get(rest[0]) if rest else None
        t = time.perf_counter()
        r = build_plan_from_onnx(paths[model], BuildOptions(refit=kind == "R", precision=prec), [], logger, timing_cache=tc)
        tcs[f"{model}:{prec}:{kind}"] = r.timing_cache
        rows.append({"step": spec, "s": round(r.seconds, 2), "wall": round(time.perf_counter() - t, 2)})
        print(json.dumps(rows[-1]), flush=True)
    rows.append({"step": "process total", "s": round(time.perf_counter() - T0, 2)})
    sess.close()
    print("ROWS " + json.dumps(rows), flush=True)


def run_children(label, env_extra, spec_lists, res, out):
    env = dict(os.environ); env.update(env_extra)
    t = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "child", MNV, ENC] + specs, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env) for specs in spec_lists]
    outs = [p.communicate()[0] for p in procs]
    wall = round(time.perf_counter() - t, 2)
    rows = []
    for o in outs:
        line = [l for l in o.splitlines() if l.startswith("ROWS ")]
        rows.append(json.loads(line[0][5:]) if line else o[-800:])
    res.append({"label": label, "wall": wall, "children": rows})
    print(json.dumps(res[-1]), flush=True)
    (out / "probe2.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    if sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], sys.argv[4:])
        sys.exit(0)
    from pathlib import Path
    out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
    MNV, ENC = sys.argv[2], sys.argv[3]
    deadline = time.time() + float(os.environ.get("PROBE_S", "480"))
    LAZY, EAGER = {"CUDA_MODULE_LOADING": "LAZY"}, {"CUDA_MODULE_LOADING": "EAGER"}
    res = []
    plan = [
        ("start-up, eager", EAGER, [[]]),
        ("start-up, lazy", LAZY, [[]]),
        ("mnv family, lazy, one process", LAZY, [["mnv:fp16:R", "mnv:fp16:P", "mnv:fp32:R", "mnv:fp32:P", "mnv:tf32:R",
                                                 "mnv:tf32:P", "mnv:fp16:P:mnv:fp16:R", "mnv:fp16:R:mnv:fp16:R"]]),
        ("mnv fp16, eager, one process", EAGER, [["mnv:fp16:R", "mnv:fp16:P"]]),
        ("mnv fp32 R alone, lazy", LAZY, [["mnv:fp32:R"]]),
        ("mnv fp32 R x3 concurrent, lazy", LAZY, [["mnv:fp32:R"]] * 3),
        ("enc family, lazy, one process", LAZY, [["enc:fp16:R", "enc:fp16:P", "enc:fp32:R", "enc:fp32:P", "enc:tf32:R",
                                                 "enc:tf32:P"]]),
    ]
    for label, env, specs in plan:
        if time.time() > deadline:
            print("skipped (deadline):", label, flush=True)
            continue
        run_children(label, env, specs, res, out)
    print("done", flush=True)
