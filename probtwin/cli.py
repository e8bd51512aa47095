"""Command line: ``probtwin demo | datasets | bench``."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    import probtwin as pt

    print(f"probtwin {pt.__version__}: simulating a V1 population (seed {args.seed}) ...")
    start = time.perf_counter()
    sim = pt.simulate.v1(n_neurons=args.neurons, n_images=args.images, repeats=args.repeats, seed=args.seed)
    print(f"simulated in {time.perf_counter() - start:.2f} s\n")
    rec = sim.recording
    print(rec)
    truth = sim.truth
    print("\nground truth:")
    print(f"  receptive fields (x, y) px  {np.round(truth['rf_position'][:3], 1).tolist()} ...")
    print(f"  complex cells               {int(truth['complex_cell'].sum())} of {rec.n_neurons}")
    print(f"  mean response              {truth['mean_response'].mean():.3f} spikes per trial")
    test = rec.split("test")
    y = np.asarray(test.responses)
    mu = truth["mean_response"][test.trial_index]
    rng = np.random.default_rng(args.seed)
    draws = rng.poisson(mu, size=(200, *mu.shape))
    print("\nthe true model scored like a twin would be (test tier, Sensorium 2022 metrics):")
    print(f"  single-trial correlation    {np.nanmean(pt.metrics.single_trial_correlation(y, mu)):.3f}")
    if test.has_repeats:
        ids = test.stimulus_ids
        print(f"  correlation to average      {np.nanmean(pt.metrics.correlation_to_average(y, mu, ids)):.3f}")
        print(f"  FEVE                        {pt.metrics.feve(y, mu, ids):.3f}")
        print(f"  oracle correlation          {np.nanmean(pt.metrics.oracle_correlation(y, ids)):.3f}")
        print(
            "  (repeats of an image differ in gaze and behaviour, which the true model knows and the\n"
            "   repeat-based noise estimate does not, so the truth's FEVE can exceed 1)"
        )
    ll = truth["log_likelihood"][test.trial_index]
    print(f"  log-likelihood              {ll.mean() / rec.n_neurons / np.log(2):.3f} bits per neuron per trial")
    print(f"  coverage_90 (random. PIT)   {pt.metrics.interval_coverage(draws, y, 0.9):.3f}")
    return 0


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
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``probtwin`` console script."""
    parser = argparse.ArgumentParser(prog="probtwin", description="Probabilistic digital twins of the brain.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="simulate a population and print its summary")
    demo.add_argument("--neurons", type=int, default=200)
    demo.add_argument("--images", type=int, default=1000)
    demo.add_argument("--repeats", type=int, default=2)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    data = sub.add_parser("datasets", help="load every real data set found and print shapes and splits")
    data.set_defaults(run=_datasets)
    bench = sub.add_parser("bench", help="print performance figures")
    bench.add_argument("what", choices=["simulate"])
    bench.add_argument("--neurons", type=int, default=1000)
    bench.add_argument("--images", type=int, default=5000)
    bench.add_argument("--repeat", type=int, default=3)
    bench.set_defaults(run=_bench)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
