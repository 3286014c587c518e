"""Fine-tune the tight view end to end for every LOPO job, on a GPU machine (issue 26, item 4).

    python -m converters.finetune.gpu_lopo .gpu/finetune --out OUT [--variants ft,probe,ft_synth] [--workers 4]
                                          [--deadline 470] [--steps 200] [--batch 128]

Reads what converters/finetune/pack.py wrote. For each variant and each job (the people a LOPO fold leaves
out), trains a ``TightNet`` from the ImageNet weights on every other person's rows and scores every row;
writes ``scores_<variant>.npy`` (jobs x rows logits, NaN where a job did not run before ``--deadline``) and
``run.json`` (what ran, seconds per job). converters/finetune/precomputed.py judges them with run.py's own
protocol. Variants:
- ``probe``: the backbone frozen, only the head learns: the frozen-feature recipe under this trainer;
- ``ft``: every layer learns (backbone at a tenth of the head's learning rate);
- ``ft_synth``: ``ft`` plus physics-based screen recaptures of the training people's own live crops
  (converters/data/recapture.py, the screen filling the view) as replay attacks, ``SYNTH_SHARE`` of the
  attack class's weight; synthetic rows are never judged.
Every person weighs the same within each class; augmentation keeps the pixel grid (mirror, whole-pixel
shifts, brightness/contrast/saturation), since resampling would blur the very texture the view must read.
A job left out of the ship list (``--ship``) is also trained on everyone and saved as ONNX.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np

VARIANTS = ("ft", "probe", "ft_synth")
SYNTH_SHARE = 0.25  # the synthetic attacks' share of the attack class's weight (the frozen recipes' best measured)
HEAD_LR, BACKBONE_LR_SHARE = 2e-3, 0.1


def decode(npz: Path) -> tuple[np.ndarray, dict]:
    import cv2

    z = np.load(npz)
    blob, off = z["jpeg"], z["offsets"]
    imgs = np.stack([cv2.imdecode(blob[off[i]:off[i + 1]], cv2.IMREAD_COLOR) for i in range(len(off) - 1)])
    meta = {k: z[k] for k in ("labels", "person", "kind", "recording")}
    return imgs, meta  # BGR


def _synth_one(args):
    import cv2

    from converters.data.recapture import RecaptureParams, recapture

    img, rec, frame, quality = args
    params = RecaptureParams.draw(np.random.default_rng(zlib.crc32(rec.encode())))
    out = recapture(img, params, "fill", frame_index=frame)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality,
                                         cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def synth_bank(imgs: np.ndarray, meta: dict, quality: int, procs: int) -> tuple[np.ndarray, np.ndarray]:
    """One recapture of every trainable live crop (one simulated screen and camera per recording)."""
    from multiprocessing import Pool

    src = np.flatnonzero((meta["labels"] == 1) & (meta["kind"] != "watermarked"))
    work = [(imgs[i], str(meta["recording"][i]), int(k), quality) for k, i in enumerate(src)]
    with Pool(procs) as pool:
        out = pool.map(_synth_one, work, chunksize=16)
    return np.stack(out), meta["person"][src]


def weights_for(labels: np.ndarray, person: np.ndarray, synth: np.ndarray) -> np.ndarray:
    """Sampling probabilities: the LOPO recipes' weights (every person the same within each class, synthetic rows
    ``SYNTH_SHARE`` of the attack class: recipes.balanced_weights), with the two classes drawn equally often."""
    from converters.lopo.recipes import balanced_weights

    w = balanced_weights(labels, person, synth, SYNTH_SHARE).astype(np.float64)
    for lab in (0, 1):
        m = labels == lab
        if m.any():
            w[m] /= w[m].sum()
    return w / w.sum()


def augment(torch, x):
    """uint8 NCHW -> float: mirror, whole-pixel shifts (reflect pad 8), brightness/contrast/saturation."""
    n = x.shape[0]
    x = x.float()
    flip = torch.rand(n, device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    pad = torch.nn.functional.pad(x, (8, 8, 8, 8), mode="reflect")
    dx, dy = (int(v) for v in torch.randint(0, 17, (2,)))
    x = pad[:, :, dy:dy + 128, dx:dx + 128]
    u = lambda lo, hi: torch.empty(n, 1, 1, 1, device=x.device).uniform_(lo, hi)  # noqa: E731
    grey = x.mean(1, keepdim=True)
    x = grey + (x - grey) * u(0.8, 1.2)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = mean + (x - mean) * u(0.8, 1.2)
    return (x * u(0.8, 1.2)).clamp(0, 255)


def train(torch, net, x, y, w, variant: str, steps: int, batch: int, seed: int):
    gen = torch.Generator(device=x.device).manual_seed(seed)
    head = [p for n, p in net.named_parameters() if not n.startswith("backbone.")]
    params = [{"params": head, "lr": HEAD_LR, "weight_decay": 1e-3}]
    if variant != "probe":
        params.append({"params": net.backbone.parameters(), "lr": HEAD_LR * BACKBONE_LR_SHARE, "weight_decay": 1e-4})
    else:
        net.backbone.requires_grad_(False)
    opt = torch.optim.AdamW(params)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in params], total_steps=steps, pct_start=0.1)
    wt = torch.as_tensor(w, dtype=torch.float32, device=x.device)
    yt = torch.as_tensor(y, dtype=torch.float32, device=x.device)
    net.train()
    losses = []  # every 25th step and the last: reading a loss waits for the GPU
    for step in range(steps):
        idx = torch.multinomial(wt, batch, replacement=True, generator=gen)
        xb = augment(torch, x[idx]).contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
            logit = net(xb)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit.float(), yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 25 == 0 or step == steps - 1:
            losses.append(float(loss.detach()))
    return losses


def score(torch, net, x, batch: int = 512) -> np.ndarray:
    net.eval()
    out = []
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
        for i in range(0, len(x), batch):
            out.append(net(x[i:i + batch].float().contiguous(memory_format=torch.channels_last)).float().cpu().numpy())
    return np.concatenate(out)


def worker(rank: int, args: dict, tasks, results) -> None:
    import torch

    from converters.finetune.mobilenet_torch import build

    dev = torch.device(args["device"])
    if args["threads"]:
        torch.set_num_threads(args["threads"])
    torch.backends.cudnn.benchmark = True
    imgs, meta = decode(Path(args["data"]) / "tight.npz")
    real = torch.from_numpy(np.ascontiguousarray(imgs[..., ::-1].transpose(0, 3, 1, 2))).to(dev)  # RGB NCHW uint8
    synth = synth_person = None
    if os.path.exists(args["synth"]):
        z = np.load(args["synth"])
        synth = torch.from_numpy(np.ascontiguousarray(z["imgs"][..., ::-1].transpose(0, 3, 1, 2))).to(dev)
        synth_person = z["person"]
    trainable = meta["kind"] != "watermarked"
    while True:
        task = tasks.get()
        if task is None or time.monotonic() > args["deadline"]:
            results.put(None)
            return
        variant, j, left_out = task["variant"], task["job"], set(task["left_out"])
        t0 = time.monotonic()
        m = trainable & ~np.isin(meta["person"], list(left_out))
        x, y, person, is_synth = real[np.flatnonzero(m)], meta["labels"][m], meta["person"][m], np.zeros(int(m.sum()), bool)
        if variant == "ft_synth" and synth is not None:
            ms = ~np.isin(synth_person, list(left_out))
            x = torch.cat([x, synth[np.flatnonzero(ms)]])
            y, person = np.concatenate([y, np.zeros(int(ms.sum()), np.int8)]), np.concatenate([person, synth_person[ms]])
            is_synth = np.concatenate([is_synth, np.ones(int(ms.sum()), bool)])
        torch.manual_seed(1000 + max(j, 0))
        net = build(Path(args["data"]) / "mobilenet_v2_imagenet.npz").to(dev).to(memory_format=torch.channels_last)
        losses = train(torch, net, x, y, weights_for(y, person, is_synth), variant, args["steps"], args["batch"], 1000 + max(j, 0))
        if j < 0:  # trained on everyone: the model to ship
            torch.save(net.state_dict(), Path(args["tmp"]) / f"ship_{variant}.pt")
            logits = None
        else:  # only the rows this job has not seen: its left-out people and the never-trained watermarked set
            need = np.flatnonzero(np.isin(meta["person"], list(left_out)) | ~trainable)
            logits = np.full(len(real), np.nan, np.float32)
            logits[need] = score(torch, net, real[need])
        results.put({"variant": variant, "job": j, "logits": logits, "seconds": time.monotonic() - t0,
                     "loss_first": losses[0], "loss_last": losses[-1], "rank": rank, "n_train": int(len(y))})


def export_onnx(data: Path, state: Path, out: Path) -> None:
    import torch

    from converters.finetune.mobilenet_torch import build

    net = build(data / "mobilenet_v2_imagenet.npz")
    net.load_state_dict(torch.load(state, map_location="cpu"))
    net.eval()
    torch.onnx.export(net, torch.zeros(1, 3, 128, 128), str(out), input_names=["rgb255"], output_names=["logit"],
                      opset_version=17, dynamo=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.finetune.gpu_lopo", description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--ship", default="ft,ft_synth", help="variants also trained on everyone and exported as ONNX")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--deadline", type=float, default=470, help="seconds after start: no job starts later")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--jobs", default="jobs.json", help="the jobs file in DATA (pack.py writes jobs.json and jobs_k4.json)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch's default)")
    ap.add_argument("--limit-jobs", type=int, default=0, help="only the first N jobs (a smoke test)")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args(argv)
    import torch.multiprocessing as mp

    t_start = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    variants = [v for v in args.variants.split(",") if v]
    bad = sorted(set(variants) - set(VARIANTS))
    if bad:
        print(f"gpu_lopo: unknown variant {','.join(bad)} (choose from {','.join(VARIANTS)})", file=sys.stderr)
        return 2
    jobs = json.loads((args.data / args.jobs).read_text())["jobs"]
    if args.limit_jobs:
        jobs = jobs[: args.limit_jobs]
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "gpu_lopo"
    tmp.mkdir(parents=True, exist_ok=True)
    synth_path = tmp / "synth.npz"
    if "ft_synth" in variants:
        imgs, meta = decode(args.data / "tight.npz")
        s_imgs, s_person = synth_bank(imgs, meta, 90, max(1, (os.cpu_count() or 2) - 2))
        np.savez(synth_path, imgs=s_imgs, person=s_person)
        print(f"gpu_lopo: {len(s_imgs)} synthetic recaptures in {time.monotonic() - t_start:.0f} s", flush=True)
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    ship = [v for v in args.ship.split(",") if v in variants]
    for v in variants:
        for j, job in enumerate(jobs):
            tasks.put({"variant": v, "job": j, "left_out": job["left_out"]})
        if v in ship:
            tasks.put({"variant": v, "job": -1, "left_out": []})
    for _ in range(args.workers):
        tasks.put(None)
    wargs = {"device": args.device, "data": str(args.data), "synth": str(synth_path), "steps": args.steps, "batch": args.batch,
             "deadline": t_start + args.deadline, "tmp": str(tmp), "threads": args.threads}
    procs = [ctx.Process(target=worker, args=(r, wargs, tasks, results)) for r in range(args.workers)]
    for p in procs:
        p.start()
    n_rows = json.loads((args.data / args.jobs).read_text())["rows"]
    scores = {v: np.full((len(jobs), n_rows), np.nan, np.float32) for v in variants}
    log: list[dict] = []
    done_workers = 0
    while done_workers < args.workers:
        r = results.get()
        if r is None:
            done_workers += 1
            continue
        if r["logits"] is not None:
            scores[r["variant"]][r["job"]] = r["logits"]
        log.append({k: v for k, v in r.items() if k != "logits"})
        n_done = sum(1 for e in log if e["variant"] == r["variant"])
        print(f"gpu_lopo: {r['variant']} job {r['job']} ({n_done}/{len(jobs)}) {r['seconds']:.1f} s, loss "
              f"{r['loss_first']:.3f} -> {r['loss_last']:.3f}, {time.monotonic() - t_start:.0f} s in", flush=True)
        if len(log) % 20 == 0:
            for v in variants:
                np.save(args.out / f"scores_{v}.npy", scores[v])
    for p in procs:
        p.join()
    for v in variants:
        np.save(args.out / f"scores_{v}.npy", scores[v])
        if (tmp / f"ship_{v}.pt").is_file():
            export_onnx(args.data, tmp / f"ship_{v}.pt", args.out / f"tight_{v}.onnx")
    (args.out / "run.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "jobs": log,
                                                   "seconds": time.monotonic() - t_start}, indent=1))
    print(f"gpu_lopo: done in {time.monotonic() - t_start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
