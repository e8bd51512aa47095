"""Command line: ``probtwin demo | datasets | bench``."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import numpy as np

__all__ = ["main"]


def _figure(path: str, observed, predicted, true_pos=None, recovered=None, title: str = "") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if true_pos is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.5), squeeze=False)
    ax = axes[0, 0]
    ax.scatter(predicted.ravel(), observed.ravel(), s=3, alpha=0.3)
    top = float(max(np.max(predicted), np.max(observed)))
    ax.plot([0, top], [0, top], "k--", lw=1)
    ax.set(xlabel="predicted mean response", ylabel="observed response", title=f"test trials {title}")
    if true_pos is not None:
        ax = axes[0, 1]
        mean, lower, upper = recovered["mean"], recovered["lower"], recovered["upper"]
        for axis, label in enumerate("xy"):
            err = [mean[:, axis] - lower[:, axis], upper[:, axis] - mean[:, axis]]
            ax.errorbar(true_pos[:, axis], mean[:, axis], yerr=err, fmt="o", ms=3, alpha=0.6, label=label)
        lim = [0, float(max(true_pos.max(), recovered["mean"].max()))]
        ax.plot(lim, lim, "k--", lw=1)
        ax.set(
            xlabel="true receptive-field centre (px)",
            ylabel="readout position, 90% interval (px)",
            title="recovered receptive fields",
        )
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# The demo's fit: quick (about a minute on two CPU cores) and --full.
_DEMO_EPOCHS = {"quick": 10, "full": 50}
_DEMO_TIME_LIMIT = 90.0  # seconds: the quick demo's fit stops here on a slow machine


def _demo(args: argparse.Namespace) -> int:
    import probtwin as pt
    from probtwin.infer.progress import show_progress

    started = time.perf_counter()
    torch_threads(args)
    with show_progress(not args.quiet):
        _run_demo(args, pt)
    print(f"\ndemo done in {time.perf_counter() - started:.0f} s")
    return 0


def _run_demo(args: argparse.Namespace, pt) -> None:
    if args.data == "cowley_v4":
        rec = pt.datasets.cowley_v4("201025", image_size=56)
        truth = None
        print(rec)
    else:
        print(f"probtwin {pt.__version__}: simulating a V1 population (seed {args.seed}) ...")
        sim = pt.simulate.v1(n_neurons=args.neurons, n_images=args.images, repeats=args.repeats, seed=args.seed)
        rec, truth = sim.recording, sim.truth
        print(rec)
    if args.full:
        twin = pt.ImageTwin(rec)  # the defaults: three fits, the whole twin uncertain
    else:
        print("one fit, only the readout uncertain (posterior='readout'; --full: the default ensemble of three)")
        twin = pt.ImageTwin(rec, posterior="readout")
    start = time.perf_counter()
    epochs = args.epochs or _DEMO_EPOCHS["full" if args.full else "quick"]
    time_limit = None if args.full or args.epochs else _DEMO_TIME_LIMIT
    if not args.full:
        print(f"fitting for {epochs} epochs (probtwin demo --full: {_DEMO_EPOCHS['full']}, a few minutes)")
    history = twin.fit(max_epochs=epochs, time_limit=time_limit, seed=args.seed, progress=not args.quiet)
    print(
        f"\nfitted in {(time.perf_counter() - start) / 60:.1f} min: {len(history)} epochs, {history.stopped}, "
        f"best validation correlation {history.best_score:.3f} (epoch {history.best_epoch})"
    )
    scores = twin.evaluate(rec, "test", seed=args.seed)
    print("\ntest scores:")
    for key, value in scores.items():
        print(f"  {key:26s} {value:.3f}" if isinstance(value, float) else f"  {key:26s} {value}")
    test = rec.split("test")
    pred = twin.predict(test, seed=args.seed)
    recovered = None
    if truth is not None:
        mu = truth["mean_response"][test.trial_index]
        y = np.asarray(test.responses)
        print(
            f"  (the true model: single-trial correlation {np.nanmean(pt.metrics.single_trial_correlation(y, mu)):.3f})"
        )
        recovered = twin.readout_positions()
        err = np.linalg.norm(recovered["mean"] - truth["rf_position"], axis=1)
        inside = np.all((recovered["lower"] <= truth["rf_position"]) & (truth["rf_position"] <= recovered["upper"]), 1)
        print("\nreceptive fields: readout positions against the true centres")
        print(f"  median error               {np.median(err):.2f} px")
        print(f"  true centre inside the 90% interval (x and y) for {inside.mean():.0%} of the neurons")
    path = _figure(
        args.figure,
        np.asarray(test.responses),
        pred.mean,
        None if truth is None else truth["rf_position"],
        recovered,
        f"({rec.name})",
    )
    print(f"\nfigure written to {path}")


def torch_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def _datasets(args: argparse.Namespace) -> int:
    import probtwin as pt

    loaders = {
        "cowley_v4 201025 (56 px)": lambda: pt.datasets.cowley_v4("201025", image_size=56),
        "cowley_v4 210224": lambda: pt.datasets.cowley_v4("210224"),
        "cowley_v4 210325": lambda: pt.datasets.cowley_v4("210325"),
        "cowley_v4 210325 raw": lambda: pt.datasets.cowley_v4("210325", trials="raw"),
        "tang_v1": pt.datasets.tang_v1,
        "allen_v1": pt.datasets.allen_v1,
        "dad_m1 chewie 0": lambda: pt.datasets.dad_m1("chewie", 0),
        "dad_m1 chewie 1": lambda: pt.datasets.dad_m1("chewie", 1),
        "nategh_perisaccadic": pt.datasets.nategh_perisaccadic,
    }
    for label, load in loaders.items():
        start = time.perf_counter()
        try:
            recs = load()
        except FileNotFoundError as err:
            print(f"{label}: not found ({err})")
            continue
        for rec in recs if isinstance(recs, list) else [recs]:
            tiers = " / ".join(f"{int(np.sum(rec.tiers == t))}" for t in ("train", "validation", "test"))
            print(
                f"{label:26s} {rec.name:32s} stimuli {rec.stimuli.shape if rec.stimuli is not None else None} "
                f"responses {rec.responses.shape}  train/validation/test {tiers}  "
                f"({time.perf_counter() - start:.1f} s)"
            )
    return 0


def _bench(args: argparse.Namespace) -> int:
    import probtwin as pt

    torch_threads(args)
    if args.what in ("experiments", "posterior", "posterior-real", "posterior-defaults"):
        _bench_experiments(args)
        return 0
    if args.what.startswith("motor-"):
        _bench_motor(args)
        return 0
    if args.what == "video-speed":
        from probtwin.bench.video import speed

        for row in speed(batch_size=8 if args.batch_size == 64 else args.batch_size, n_neurons=args.neurons or 200):
            print(
                f"clip {row['clip_frames']:4d} frames: SVI step {row['twin_step_s'] * 1e3:7.1f} ms, plain "
                f"{row['plain_step_s'] * 1e3:7.1f} ms (ratio {row['ratio']:.2f}); saved activations "
                f"{row['twin_saved_mib']:7.1f} MiB (plain {row['plain_saved_mib']:.1f}); predict "
                f"{row['twin_predict_fps']:.0f} frames/s (50 draws)"
            )
        return 0
    if args.what == "video":
        from probtwin.bench.video import run_video_comparison

        limit = 900.0 if args.time_limit is None else args.time_limit
        seed = 5 if args.first_seed == 0 else args.first_seed
        out = run_video_comparison(args.neurons or 200, args.images or 300, args.frames, seed, limit)
        print(json.dumps(out, indent=1))
        return 0
    if args.what in ("free-viewing", "free-viewing-priors"):
        from probtwin.bench.free_viewing import prior_comparison, run_free_viewing_comparison

        seed = 5 if args.first_seed == 0 else args.first_seed
        if args.what == "free-viewing":
            limit = 900.0 if args.time_limit is None else args.time_limit
            out = run_free_viewing_comparison(args.neurons or 300, args.images or 200, 80, seed, limit)
        else:
            limit = 600.0 if args.time_limit is None else args.time_limit
            out = prior_comparison(args.neurons or 15, args.images or 200, seed, limit)
        print(json.dumps(out, indent=1))
        return 0
    if args.what == "fixation":
        from probtwin.bench.free_viewing import fixation_comparison

        limit = 600.0 if args.time_limit is None else args.time_limit
        out = [fixation_comparison(session, limit) for session in args.datasets or ["201025"]]
        print(json.dumps(out, indent=1))
        return 0
    if args.what == "perisaccadic":
        from probtwin.bench.perisaccadic import run_perisaccadic_comparison

        sessions = args.datasets or ["181024"]
        out = [run_perisaccadic_comparison(session) for session in sessions]
        print(json.dumps(out, indent=1, default=float))
        return 0
    if args.what == "transfer":
        from probtwin.bench.transfer import run_transfer_comparison

        limit = 300.0 if args.time_limit is None else args.time_limit
        seeds = range(args.first_seed or 5, (args.first_seed or 5) + args.seeds)
        for data in args.datasets or ["cowley_v4_210224"]:
            out = run_transfer_comparison(data, seeds, twin_time_limit=limit)
            print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=1, default=float))
        return 0
    if args.what == "report":
        from probtwin.bench.report import run_report

        limit = 900.0 if args.time_limit is None else args.time_limit
        run_report(args.entries, args.results, args.page, time_limit=limit)
        return 0
    args.time_limit = 900.0 if args.time_limit is None else args.time_limit
    if not args.what.startswith("noise-"):
        args.neurons = args.neurons or 1000
        args.images = args.images or 5000
    if args.what == "simulate":
        pt.simulate.v1(n_neurons=50, n_images=100, seed=0)  # warm-up
        times = []
        for seed in range(args.repeat):
            start = time.perf_counter()
            pt.simulate.v1(n_neurons=args.neurons, n_images=args.images, seed=seed)
            times.append(time.perf_counter() - start)
        per_cell = np.median(times) / (args.neurons * args.images) * 1e9
        print(
            f"simulate.v1 {args.neurons} neurons x {args.images} images: median {np.median(times):.2f} s "
            f"over {args.repeat} runs (min {min(times):.2f} s), {per_cell:.0f} ns per neuron-image"
        )
    elif args.what == "svi-step":
        from probtwin.bench.speed import side_by_side

        sim = pt.simulate.v1(n_neurons=args.neurons, n_images=max(args.images, 256), seed=0)
        twin = pt.ImageTwin(sim.recording).to(pt.infer.resolve_device(args.device))
        r = side_by_side(twin, batch_size=args.batch_size, steps=args.repeat)
        print(
            f"one step, batch {r['batch_size']}, {args.neurons} neurons, {twin.device}: SVI {r['svi'] * 1e3:.1f} ms, "
            f"plain PyTorch (point-estimate readout) {r['plain'] * 1e3:.1f} ms, ratio {r['ratio']:.3f} "
            f"(medians of {r['steps']} steps each, interleaved)"
        )
    elif args.what == "predict-memory":
        from probtwin.bench.speed import predict_memory

        sim = pt.simulate.v1(n_neurons=args.neurons, n_images=args.images, seed=0)
        twin = pt.ImageTwin(sim.recording)
        stimuli = np.asarray(sim.recording.stimuli)
        r = predict_memory(twin, stimuli, num_samples=100)
        print(
            f"predict 100 draws x {args.images} images x {args.neurons} neurons: {r['seconds']:.1f} s, output "
            f"{r['output_mib']:.0f} MiB, peak resident memory added {r['peak_added_mib']:.0f} MiB"
        )
    elif args.what.startswith("noise-"):
        _bench_noise(args)
    else:
        from probtwin.bench.accuracy import run_accuracy

        epochs = args.epochs or 200
        run_accuracy(args.datasets or None, seed=0, max_epochs=epochs, progress=False, time_limit=args.time_limit)
    return 0


def _bench_experiments(args: argparse.Namespace) -> None:
    from probtwin.bench.experiments import run_posterior_comparison, run_state_tests

    settings = dict(
        n_neurons=args.neurons or 100,
        n_images=args.images or 2500,
        time_limit=480.0 if args.time_limit is None else args.time_limit,
    )
    if args.what == "experiments":
        run_state_tests(seeds=tuple(range(args.seeds)), **settings)
        return
    if args.what == "posterior-real":  # Cowley V4 210325, single trials: an evaluation set
        from probtwin.bench.experiments import real_calibration
        from probtwin.datasets import cowley_v4

        limit = 300.0 if args.time_limit is None else args.time_limit
        real_calibration(cowley_v4("210325", trials="raw"), tuple(args.posteriors), time_limit=limit)
        return
    seeds = tuple(range(args.first_seed, args.first_seed + args.seeds))
    if args.what == "posterior-defaults":  # issue 14's user case: defaults, 150 neurons, 15 minutes
        from probtwin.bench.experiments import run_default_state_tests

        posteriors = tuple(None if p == "default" else p for p in args.posteriors)
        limit = 900.0 if args.time_limit is None else (args.time_limit if args.time_limit > 0 else None)
        run_default_state_tests(seeds, posteriors, n_neurons=args.neurons or 150, time_limit=limit)
        return
    rows = run_posterior_comparison(
        seeds=seeds, posteriors=tuple(args.posteriors), recalibrate=args.recalibrate, mixture=args.mixture, **settings
    )
    for posterior in dict.fromkeys(r["posterior"] for r in rows):
        mine = [r for r in rows if r["posterior"] == posterior]
        means = {k: float(np.mean([r[k] for r in mine])) for k in mine[0] if k not in ("seed", "posterior")}
        print(f"mean {posterior} " + " ".join(f"{k}={v:.3f}" for k, v in means.items()))


def _bench_motor(args: argparse.Namespace) -> None:
    from probtwin.bench import motor

    limit = 900.0 if args.time_limit is None else args.time_limit
    if args.what == "motor-real":
        for session in (0, 1):  # session 0 is the development set, session 1 the evaluation set
            print(f"--- chewie session {session}", flush=True)
            motor.run_real("chewie", session, max_epochs=args.epochs, time_limit=limit)
    elif args.what == "motor-simulation":
        for seed in range(args.seeds):
            print(f"--- seed {seed}", flush=True)
            motor.run_simulation(seed, n_units=args.neurons or 40, max_epochs=args.epochs or 400, time_limit=limit)
    else:
        smallest = args.neurons or 100
        motor.step_scaling((smallest, 10 * smallest), steps=args.repeat, batch_size=args.batch_size, device=args.device)


def _bench_noise(args: argparse.Namespace) -> None:
    from probtwin.bench import noise
    from probtwin.bench.accuracy import print_figures

    if args.what == "noise-simulation":
        r = noise.run_flow_noise(
            n_neurons=args.neurons or 200,
            n_images=args.images or 400,
            rank=args.rank or 3,
            max_epochs=args.epochs or 200,
            time_limit=args.time_limit,
            split=args.split,
        )
    elif args.what == "noise-v4":
        r = noise.run_count_noise(rank=args.rank or 3, max_epochs=args.epochs or 200, time_limit=args.time_limit)
    elif args.what in ("noise-video", "noise-video-ar1"):
        limit = 600.0 if args.time_limit is None else args.time_limit
        seed = 5 if args.first_seed == 0 else args.first_seed
        model = "ar1" if args.what.endswith("ar1") else "latent"
        r = noise.run_video_noise(
            model, seed, args.neurons or 100, args.images or 120, args.frames, args.rank or 2, time_limit=limit
        )
    else:
        smallest = args.neurons or 1000
        r = noise.step_scaling(
            neurons=(smallest, 10 * smallest),
            rank=args.rank or 8,
            steps=args.repeat,
            batch_size=args.batch_size,
            device=args.device,
        )
    print_figures(r)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``probtwin`` console script."""
    parser = argparse.ArgumentParser(prog="probtwin", description="Probabilistic digital twins of the brain.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="simulate a population (or load real data), fit an ImageTwin, report")
    demo.add_argument("--data", choices=["simulation", "cowley_v4"], default="simulation")
    demo.add_argument("--neurons", type=int, default=200)
    demo.add_argument("--images", type=int, default=2000)
    demo.add_argument("--repeats", type=int, default=1)
    demo.add_argument("--epochs", type=int, default=None, help="epochs of the fit (default 10; 50 with --full)")
    demo.add_argument("--full", action="store_true", help="the default twin: three fits of 50 epochs")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=int, default=None)
    demo.add_argument("--figure", default="probtwin_demo.png")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo)
    data = sub.add_parser("datasets", help="load every real data set found and print shapes and splits")
    data.set_defaults(run=_datasets)
    bench = sub.add_parser("bench", help="print performance and accuracy figures")
    bench.add_argument(
        "what",
        choices=[
            "simulate",
            "svi-step",
            "predict-memory",
            "accuracy",
            "noise-simulation",
            "noise-v4",
            "noise-video",
            "noise-video-ar1",
            "noise-scale",
            "experiments",
            "motor-real",
            "motor-simulation",
            "motor-scale",
            "report",
            "posterior",
            "posterior-real",
            "posterior-defaults",
            "video",
            "video-speed",
            "free-viewing",
            "free-viewing-priors",
            "perisaccadic",
            "fixation",
            "transfer",
        ],
    )
    bench.add_argument("--seeds", type=int, default=5, help="simulations, seeds 0..N-1 (experiments, posterior)")
    bench.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="the first simulation seed (posterior; video, noise-video[-ar1]: the seed, 0 meaning seed 5)",
    )
    bench.add_argument(
        "--posteriors",
        nargs="+",
        default=["readout", "swag", "ensemble"],
        help="whole-twin posteriors compared (posterior; posterior-defaults: 'default' for the twin's own)",
    )
    bench.add_argument(
        "--recalibrate",
        action="store_true",
        help="also score each twin after recalibrating its readout posterior on validation trials (posterior)",
    )
    bench.add_argument(
        "--mixture",
        action="store_true",
        help="also score an ensemble or bootstrap with its members as drawn, not combined as Student-t (posterior)",
    )
    bench.add_argument("--rank", type=int, default=None, help="latent rank (noise benchmarks)")
    bench.add_argument(
        "--split",
        choices=["repeat", "stimulus"],
        default="repeat",
        help="held-out repeats or images (noise-simulation)",
    )
    bench.add_argument(
        "--neurons", type=int, default=None, help="default 1000 (200 for noise-simulation, 100 for experiments)"
    )
    bench.add_argument(
        "--images",
        type=int,
        default=None,
        help="default 5000 (400 for noise-simulation, 2500 for experiments; video: movies, default 300)",
    )
    bench.add_argument("--frames", type=int, default=60, help="frames per movie (video)")
    bench.add_argument("--repeat", type=int, default=3)
    bench.add_argument("--batch-size", type=int, default=64)
    bench.add_argument("--device", default="auto")
    bench.add_argument(
        "--epochs", type=int, default=None, help="epoch cap of each fit (default 200; the motor twin's own default)"
    )
    bench.add_argument("--threads", type=int, default=None)
    bench.add_argument("--datasets", nargs="*", default=None)
    bench.add_argument(
        "--time-limit", type=float, default=None, help="seconds a fit may take (default 900; 480 for experiments)"
    )
    bench.add_argument(
        "--entries", nargs="*", default=None, help="report: entries to run (default all; none: only render the page)"
    )
    bench.add_argument("--results", default="docs/scoreboard", help="report: folder of the results (JSON)")
    bench.add_argument("--page", default="docs/pages/scoreboard.md", help="report: the page written")
    bench.set_defaults(run=_bench)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
