"""Command line: python -m core list | train | eval | predict | bench | cgan  (each with --help).

Human text goes to stdout; with --json, stdout holds one JSON document and progress goes to stderr. Human text is
English, or Chinese with --lang zh (or $MNIST_LAB_LANG=zh) for list, train, eval and predict; JSON keys never change.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TextIO

from core import bench, checkpoints, cost, data, distributed, export, gan, i18n, paper, preprocess, spec, zoo
from core.models import get_card, list_models
from core.predict import Ensemble
from core.recipes import recipe, ship, train_all
from core.training import (
    OPTIMIZERS,
    SCHEDULES,
    Callback,
    EpochEvent,
    Progress,
    StepEvent,
    Trainer,
    TrainingError,
    TrainResult,
    clock,
    evaluate,
    resolve_device,
)


def human(n: float) -> str:
    """1234567 -> '1.23 M', 61706 -> '61.7 k'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f}"


class ConsoleProgress(Callback):
    """A progress bar on stderr (redrawn in place on a terminal, a line every few seconds otherwise)
    and one line per epoch on ``out``."""

    def __init__(self, out: TextIO, label: str = "", language: str = i18n.DEFAULT) -> None:
        self.out, self.label, self.language = out, label, language
        self.tty = sys.stderr.isatty()
        self.last_line = 0.0

    def say(self, key: str, **fields) -> str:
        return i18n.say(f"cli.{key}", self.language, **fields)

    def on_step(self, trainer: Trainer, event: StepEvent) -> None:
        self.bar(event, self.say("step_loss", loss=event.loss))

    def bar(self, event: Progress, detail: str) -> None:
        """Any run's progress (the classifiers' or the GAN's), with what it reports besides."""
        width = 24
        filled = round(width * event.progress)
        line = self.label + self.say("bar", epoch=event.epoch, epochs=event.epochs,
                                     bar="#" * filled + "." * (width - filled), percent=100 * event.progress,
                                     speed=event.samples_per_s, eta=clock(event.eta_s), detail=detail)
        if self.tty:
            print(f"\r{line}", end="", file=sys.stderr, flush=True)
        elif time.monotonic() - self.last_line > 5:
            print(line, file=sys.stderr, flush=True)
            self.last_line = time.monotonic()

    def clear(self) -> None:
        """Wipe the bar off a terminal before a line that stays."""
        if self.tty:
            print("\r" + " " * 100 + "\r", end="", file=sys.stderr)

    def on_epoch_end(self, trainer: Trainer, event: EpochEvent) -> None:
        self.clear()
        val = (self.say("epoch_val", loss=event.val_loss, accuracy=event.val_accuracy)
               if event.val_loss is not None else "")
        print(self.label + self.say("epoch", epoch=event.epoch, epochs=event.epochs, loss=event.train_loss,
                                    accuracy=event.train_accuracy, val=val, seconds=event.seconds,
                                    best=self.say("best") if event.improved else ""), file=self.out, flush=True)

    def on_evaluate(self, trainer: Trainer) -> None:
        print(self.label + self.say("scoring"), file=sys.stderr, flush=True)


class GanConsoleProgress(ConsoleProgress):
    """The same bar and epoch lines for the GAN, with both players' losses."""

    def on_step(self, trainer: gan.GanTrainer, event: gan.GanStep) -> None:
        self.bar(event, self.say("gan_losses", d_loss=event.d_loss, g_loss=event.g_loss))

    def on_epoch_end(self, trainer: gan.GanTrainer, event: gan.GanEpoch) -> None:
        self.clear()
        print(self.label + self.say("gan_epoch", epoch=event.epoch, epochs=event.epochs, d_loss=event.d_loss,
                                    g_loss=event.g_loss, seconds=event.seconds), file=self.out, flush=True)


def emit(document: object) -> None:
    """One JSON document on stdout; a number that is not finite becomes null, since JSON has no NaN."""
    print(json.dumps(_finite(document), indent=1, allow_nan=False, ensure_ascii=False))


def _finite(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# --- list -------------------------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for name in list_models():
        card = get_card(name)
        params, macs = cost.architecture_size(name)
        rows.append({**asdict(card), "ideas": list(card.ideas), "params": params, "macs": macs})
    if args.json:
        emit(rows)
        return 0
    say = i18n.texts("cli", args.lang)
    print(say["list_header"].format(**dict(zip(("name", "title", "year", "params", "macs", "idea"),
                                               say["list_columns"], strict=True))))
    for row in rows:
        summary = i18n.card_words(get_card(row["name"]), args.lang).summary
        print(say["list_header"].format(name=row["name"], title=row["title"], year=row["year"],
                                        params=human(row["params"]), macs=human(row["macs"]), idea=summary))
    return 0


# --- train ------------------------------------------------------------------------------------

# Flags that override single fields of the architecture's recipe (None: keep the recipe's).
_OVERRIDES = ("epochs", "batch_size", "lr", "optimizer", "schedule", "weight_decay", "label_smoothing",
              "augment", "warp", "erase", "val_split", "patience", "seed", "limit", "width", "momentum", "nesterov",
              "resolution")


def cmd_train(args: argparse.Namespace) -> int:
    if not distributed.launched():
        if args.sync_bn:
            raise ValueError("--sync-bn synchronises batch norm across the ranks of a torchrun run: "
                             "start it with torchrun --nproc_per_node=N -m core train ...")
        return train_one_or_all(args, None)
    if args.all:
        raise ValueError("train --all trains on one device; under torchrun, train one --arch or --spec")
    world = distributed.join(args.device)
    try:
        return train_one_or_all(args, world)
    except (RuntimeError, distributed.DistributedError) as error:
        if isinstance(error, TrainingError):
            raise
        # A rank that died leaves the others' next collective to fail after the timeout, or at once.
        raise distributed.DistributedError(
            f"rank {world.rank} of {world.size}: the run across ranks broke off ({str(error).splitlines()[0]}); "
            "another rank most likely died: see its error above. The run is lost.") from error
    finally:
        distributed.leave()


def train_one_or_all(args: argparse.Namespace, world: distributed.World | None) -> int:
    """``train``: ``world`` is this process's rank of a torchrun run, or None on one device."""
    overrides = {k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None}
    leads = world is None or world.leader
    out = sys.stderr if args.json else sys.stdout
    if args.all:
        return train_every_architecture(args, overrides, out)
    if args.spec and args.ship:
        raise ValueError("--ship makes the zoo's shipped model of an architecture: train a built network without it")
    if args.ship and args.resolution not in (None, paper.ZOO):
        raise ValueError("--ship makes the zoo's model at 28x28; a paper-scale run is measured, not shipped")
    arch = spec.register(read_spec(args.spec)) if args.spec else args.arch
    config = replace(recipe(arch, args.dataset), **overrides)
    # Everything that could refuse the run is checked before it trains, not after.
    config.validate()
    folder = checkpoints.destination(ship=args.ship)
    default_name = get_card(arch).title if args.spec else arch  # a built network: the name its spec gives it
    name = arch if args.ship else checkpoints.check_name(args.name or default_name)
    checkpoints.check_writable(folder)
    say = i18n.texts("cli", args.lang)
    if leads:
        print(say["training"].format(arch=config.arch, dataset=data.get_spec(config.dataset).title,
                                     optimizer=config.optimizer, lr=config.lr, schedule=config.schedule,
                                     batch=config.batch_size, epochs=config.epochs), file=out, flush=True)
    trainer = Trainer(config, device=args.device, data_root=args.data,
                      callbacks=[ConsoleProgress(out, language=args.lang)], world=world, sync_bn=args.sync_bn)
    result = trainer.fit()
    if not leads:
        return 0  # rank 0 alone evaluates and saves
    summary = result.summary() | ({"ranks": world.size} if world else {})
    if config.resolution != paper.ZOO:
        return report_paper_scale(args, result, ranks=world.size if world else 1)
    if args.ship:
        record = ship(result, data_root=args.data)
    else:
        record = checkpoints.save_classifier(result.model, name=name, arch=config.arch, dataset=config.dataset,
                                             summary=summary, data_root=args.data)
    summary |= {"test_accuracy": record.test_accuracy, "saved_to": str(record.path)}  # of the file as written
    if args.json:
        emit(summary)
    else:
        print(say["result"].format(accuracy=record.test_accuracy, status=say["status"][result.status],
                                   best=result.best_epoch,
                                   seconds=result.seconds, speed=result.train_samples_per_s, device=result.device))
        if result.divergence:
            print(i18n.in_language(result.divergence, args.lang))
        print(say["saved" if record.name == name else "saved_as"].format(path=record.path, name=record.name))
    return 0


def report_paper_scale(args: argparse.Namespace, result: TrainResult, *, ranks: int) -> int:
    """A paper-scale run's figures, kept in the paper-scale report (``core.paper``) rather than as a model."""
    row = paper.row(result, ranks=ranks)
    paper.record(row)
    if args.json:
        emit(row)
    else:
        print(f"{row['arch']} at {row['resolution']}x{row['resolution']}: test accuracy {row['test_accuracy']:.2f}%, "
              f"{row['seconds']:.0f} s, {row['train_images_per_s']:,.0f} train img/s on {row['device']}"
              f"{f' x {ranks} ranks' if ranks > 1 else ''}; recorded in {paper.report_file()}")
    return 0


def train_every_architecture(args: argparse.Namespace, overrides: dict, out: TextIO) -> int:
    folder = checkpoints.destination(ship=args.ship)
    checkpoints.check_writable(folder)
    outcomes = []

    def progress(arch: str) -> list[Callback]:
        return [ConsoleProgress(out, f"{arch}: ", args.lang)]

    for outcome in train_all(args.dataset, folder=folder, overrides=overrides, device=args.device,
                             data_root=args.data, callbacks=progress):
        row = {"arch": outcome.arch, "status": outcome.status}
        if outcome.record is not None:
            row |= {"test_accuracy": outcome.record.test_accuracy, "seconds": outcome.record.seconds,
                    "file": str(outcome.record.path)}
        if outcome.resumed_from_epoch:
            row["resumed_from_epoch"] = outcome.resumed_from_epoch
        outcomes.append(row)
        accuracy = f"{row['test_accuracy']:.2f}%" if "test_accuracy" in row else ""
        print(f"{outcome.arch}: {outcome.status} {accuracy}", file=out, flush=True)
    if args.json:
        emit(outcomes)
    return 0


# --- eval -------------------------------------------------------------------------------------

def cmd_eval(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    records = [
        r for r in checkpoints.find_models(args.dataset)
        if args.only is None or r.shipped == (args.only == "shipped")
    ]
    rows, failed = [], 0
    say = i18n.texts("cli", args.lang)
    for record in records:
        row = {"arch": record.arch, "dataset": record.dataset, "name": record.name,
               "shipped": record.shipped, "file": str(record.path),
               "manifest_accuracy": record.test_accuracy}
        try:
            model = checkpoints.load_record(record).to(device)
            test = data.load(record.dataset, train=False, root=args.data, device=device)
            row["test_accuracy"] = round(evaluate(model, test, record.dataset).accuracy, 2)
        except checkpoints.CheckpointError as error:
            row["error"] = str(error)
            failed += 1
        rows.append(row)
        if not args.json:
            result = (f"{row['test_accuracy']:6.2f}%" if "test_accuracy" in row
                      else say["eval_error"].format(error=row["error"]))
            print(say["eval_line"].format(dataset=record.dataset, name=record.name, result=result,
                                          manifest=record.test_accuracy), flush=True)
    leftovers = [str(p) for folder in (checkpoints.WEIGHTS_DIR, checkpoints.runs_dir())
                 for p in checkpoints.orphans(folder)]
    if args.json:
        emit(rows)
    elif not records:
        print(say["no_models"])
    if leftovers:
        print(f"warning: {len(leftovers)} weights files that no manifest lists (a save was interrupted): "
              + ", ".join(leftovers) + "; `python -m core clean` removes them", file=sys.stderr)
    return 1 if failed else 0


# --- clean ------------------------------------------------------------------------------------

def cmd_clean(args: argparse.Namespace) -> int:
    removed = []
    for folder in (checkpoints.WEIGHTS_DIR, checkpoints.runs_dir()):
        removed += checkpoints.remove_leftovers(folder)
        for orphan in checkpoints.orphans(folder):
            if not args.dry_run:
                orphan.unlink()
            removed.append(orphan)
    if args.json:
        emit({"removed" if not args.dry_run else "would_remove": [str(p) for p in removed]})
    else:
        verb = "would remove" if args.dry_run else "removed"
        print(f"{verb} {len(removed)} files" + "".join(f"\n  {p}" for p in removed))
    return 0


# --- bench ------------------------------------------------------------------------------------

def cmd_bench(args: argparse.Namespace) -> int:
    if args.zoo:
        return bench_zoo(args)
    if args.paper:
        return bench_paper(args)
    device = resolve_device(args.device)
    report = {"device": bench.describe_machine(device)}
    print(f"benchmarking on {report['device']}", file=sys.stderr, flush=True)
    report["pipeline"] = bench.pipeline_benchmark(
        batches=args.batches, rounds=args.rounds, batch_size=args.batch_size, device=device, data_root=args.data
    )
    report["draw"] = bench.draw_latency(args.dataset or "mnist", data_root=args.data)
    if not args.skip_cgan:
        print("timing one CGAN epoch on each device ...", file=sys.stderr, flush=True)
        images = min(args.cgan_images or data.TRAIN_SIZE, data.TRAIN_SIZE)
        report["cgan_epoch"] = [
            {"device": bench.describe_machine(d), "images": images,
             "seconds": round(gan.epoch_seconds(device=d, dataset=args.dataset or "mnist", data_root=args.data,
                                                limit=args.cgan_images), 1)}
            for d in bench.speed_devices()]
    if args.json:
        emit(report)
        return 0
    pipeline = report["pipeline"]
    print(f"training pipeline: {pipeline['arch']}, batch {pipeline['batch_size']}, median of "
          f"{pipeline['rounds']} rounds of {pipeline['batches']} batches, on {report['device']}")
    for key, label in (("tutorial_images_per_s", "per-sample torchvision + DataLoader"),
                       ("trainer_images_per_s", "our trainer (tensors on the device)"),
                       ("trainer_augmented_images_per_s", "our trainer with augmentation")):
        print(f"  {label:<40} {pipeline[key]:>10,.0f} img/s")
    print(f"  speed-up {pipeline['speedup']:.1f}x")
    draw = report["draw"]
    if draw["models"]:
        print(f"drawing to answers: preprocessing + {draw['models']} shipped {draw['dataset']} models, "
              f"median of {draw['repeats']} with a page's {draw['threads']} torch thread(s): "
              f"{draw['median_ms']:.1f} ms")
    else:
        print(f"drawing to answers: no shipped {draw['dataset']} models to time")
    for epoch in report.get("cgan_epoch", []):
        print(f"one CGAN epoch ({epoch['images']:,} images, batch 128) on {epoch['device']}: {epoch['seconds']:.1f} s")
    return 0


def bench_paper(args: argparse.Namespace) -> int:
    """The lab report's table again: the seven at their papers' sizes, trained here, beside its figures and the
    zoo's 28x28 versions."""
    dataset = args.dataset or "mnist"
    chosen = args.only.split(",") if args.only else list(paper.RESOLUTION)
    unknown = [arch for arch in chosen if arch not in paper.RESOLUTION]
    if unknown:
        raise ValueError(f"--only {','.join(unknown)}: the lab report's networks are {', '.join(paper.RESOLUTION)}")
    rows = []
    for arch in chosen:
        # The lab report's setting: 5 epochs at batch 64 over the whole training set, nothing held out.
        config = replace(recipe(arch, dataset), resolution=paper.RESOLUTION[arch], epochs=args.epochs,
                         batch_size=args.batch_size, val_split=0.0, patience=0, limit=args.limit)
        print(f"{arch} at {config.resolution}x{config.resolution}, {config.epochs} epochs, batch {config.batch_size}",
              file=sys.stderr, flush=True)
        result = Trainer(config, device=args.device, data_root=args.data,
                         callbacks=[ConsoleProgress(sys.stderr, f"{arch}: ", args.lang)]).fit()
        rows.append(paper.row(result, ranks=1))
        paper.record(rows[-1])
    if args.json:
        emit(rows)
        return 0
    reported = {figure.arch: figure for figure in zoo.LAB_REPORT}
    ours = {r.arch: r for r in checkpoints.find_models(dataset) if r.shipped}
    print(f"{'network':<10} {'input':>7} {'params':>12} {'time s':>8} {'test %':>7}   {'report s':>8} "
          f"{'report %':>8}   {'ours 28x28 %':>12}")
    for row in rows:
        figure, small = reported.get(row["arch"]), ours.get(row["arch"])
        print(f"{row['arch']:<10} {row['resolution']:>4}px {row['params']:>12,} {row['seconds']:>8.0f} "
              f"{row['test_accuracy']:>7.2f}   {figure.seconds if figure else '':>8} "
              f"{figure.accuracy if figure else '':>8}   {small.test_accuracy if small else '':>12}")
    print(f"on {rows[0]['device'] if rows else ''}; recorded in {paper.report_file()}")
    return 0


def bench_zoo(args: argparse.Namespace) -> int:
    devices = bench.speed_devices() if args.device is None else [resolve_device(args.device)]
    machines = [zoo.timing_machine(device) for device in devices]
    print(f"timing the zoo on {' and '.join(machines)}", file=sys.stderr, flush=True)
    rows = zoo.zoo_table(checkpoints.find_models(args.dataset), devices=devices, refresh=args.refresh,
                         repeats=args.repeats, progress=step_progress)
    if args.json:
        emit({"machines": machines, "models": [asdict(row) for row in rows],
              "lab_report": {"setting": zoo.LAB_REPORT_SETTING,
                             "figures": [asdict(figure) for figure in zoo.LAB_REPORT]}})
        return 0
    if not rows:
        print("no trained models found: train one with `python -m core train --arch lenet5`")
        return 0
    gpu = any(row.gpu_latency_ms is not None for row in rows)
    width = max(len(row.name) for row in rows)
    print(f"{'model':<{width}} {'dataset':<8} {'params':>8} {'MACs':>8} {'MB':>6} {'acc %':>6} {'train s':>8} "
          f"{'epochs':>6} {'CPU ms':>7} {'CPU img/s':>10}" + (f" {'GPU ms':>7} {'GPU img/s':>10}" if gpu else "")
          + "  trained on")

    def speed(milliseconds: float | None, images_per_s: float | None) -> str:
        if milliseconds is None:
            return f" {'-':>7} {'-':>10}"
        return f" {milliseconds:>7.2f} {images_per_s:>10,.0f}"

    for row in rows:
        print(f"{row.name:<{width}} {row.dataset:<8} {human(row.params):>8} {human(row.macs):>8} "
              f"{row.weights_mb:>6.2f} {row.test_accuracy:>6.2f} {row.train_seconds:>8.1f} {row.epochs:>6}"
              + speed(row.cpu_latency_ms, row.cpu_images_per_s)
              + (speed(row.gpu_latency_ms, row.gpu_images_per_s) if gpu else "") + f"  {row.train_device}")
    print(f"latency: one image; img/s: batch 256; medians after a warm-up, on {' and '.join(machines)}")
    print(f"for context, the lab report ({zoo.LAB_REPORT_SETTING}):")
    for figure in zoo.LAB_REPORT:
        print(f"  {figure.family:<10} {figure.seconds:>7.2f} s {figure.accuracy:>6.2f}%")
    return 0


def step_progress(done: int, total: int, what: str) -> None:
    """A slow measurement's progress on stderr: redrawn in place on a terminal, one line per step otherwise."""
    line = f"[{done}/{total}] {what}"
    if sys.stderr.isatty():
        print(f"\r{line:<60}", end="\n" if done == total else "", file=sys.stderr, flush=True)
    else:
        print(line, file=sys.stderr, flush=True)


# --- cgan -------------------------------------------------------------------------------------

def _generator(args: argparse.Namespace) -> gan.Generator:
    if args.weights:
        return gan.load_generator(args.weights)
    record = gan.find_generator(args.dataset)
    if record is None:
        raise ValueError(f"no {args.dataset} generator yet: train one with `python -m core cgan train`")
    return gan.load_generator(record.path)


def cmd_cgan_train(args: argparse.Namespace) -> int:
    config = gan.GanConfig(dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                           limit=args.limit)
    config.validate()
    folder = checkpoints.destination(ship=args.ship)
    name = gan.ARCH if args.ship else checkpoints.check_name(args.name or gan.ARCH)
    checkpoints.check_writable(folder)
    out = sys.stderr if args.json else sys.stdout
    result = gan.train_gan(config, device=args.device, data_root=args.data, callbacks=[GanConsoleProgress(out)])
    # A shipped generator is scored in full (the page shows these figures); a run gets the quick scores.
    print("scoring: label agreement, diversity, FID" + (", classification score" if args.ship else "") + " ...",
          file=sys.stderr, flush=True)

    def score(generator: gan.Generator) -> gan.Scores:
        return gan.score(generator, args.dataset, per_class=gan.SHIPPED_PER_CLASS if args.ship else 200,
                         cas_images=gan.SHIPPED_CAS_IMAGES if args.ship else 0, data_root=args.data)

    record = gan.save_generator(result, score=score, name=name, ship=args.ship)
    scores = record.metrics
    summary = {**result.summary(), "scores": scores, "saved_to": str(record.path)}
    if args.json:
        emit(summary)
    else:
        print(f"label agreement {scores['agreement']:.2f}%  FID {scores['fid']:.2f} "
              f"(real: {scores['fid_reference']:.2f})\nsaved {record.path}")
    return 0


def cmd_cgan_sample(args: argparse.Namespace) -> int:
    out = Path(args.out)
    grid = out.suffix.lower() == ".png"
    if not grid and (out.suffix or (out.exists() and not out.is_dir())):
        raise ValueError(f"--out {out}: name a .png file for one grid, or a folder (no extension) for one PNG each")
    checkpoints.check_writable(out.parent if grid else out)
    generator = _generator(args)
    digits = gan.synthetic_dataset(generator, args.n, seed=args.seed, label=args.digit)
    images, labels = digits.images.numpy(), digits.labels.tolist()
    if grid:
        columns = generator.num_classes if args.digit is None else math.ceil(math.sqrt(args.n))
        write_png(gan.make_grid(images, columns=columns), out)
        written = [out]
    else:
        written = [out / f"{i:04d}-{label}.png" for i, label in enumerate(labels)]
        for image, path in zip(images, written, strict=True):
            write_png(image, path)
    if args.json:
        emit({"files": [str(p) for p in written], "labels": labels})
    else:
        print(f"wrote {written[0]}" if len(written) == 1 else f"wrote {len(written)} pictures to {out}")
    return 0


def write_png(pixels, path: Path) -> None:
    checkpoints.write_atomic(path, gan.png_bytes(pixels))  # makes the folder; a failure says which file


def cmd_cgan_export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in gan.EXPORT_FORMATS:
        raise ValueError(f"--out must end in .csv, .npz or .pt, got {out.name!r}")
    checkpoints.check_writable(out.parent)
    gan.export_dataset(_generator(args), args.n, out, fmt=fmt, seed=args.seed,
                       on_progress=lambda done, total: step_progress(done, total, "digits made"))
    if args.json:
        emit({"file": str(out), "count": args.n})
    else:
        print(f"wrote {args.n} generated digits to {out}")
    return 0


def cmd_cgan_score(args: argparse.Namespace) -> int:
    if args.ship:
        # the manifest's scores must be comparable with those of `cgan train --ship`
        if args.weights or (args.per_class, args.cas) != (gan.SHIPPED_PER_CLASS, gan.SHIPPED_CAS_IMAGES):
            raise ValueError("--ship scores the shipped generator as `cgan train --ship` does: "
                             "leave out --weights, --per-class and --cas")
        record = gan.find_generator(args.dataset)  # the shipped one, if there is one
        if record is None or not record.shipped:
            raise ValueError(f"no shipped {args.dataset} generator: make one with `python -m core cgan train --ship`")
        generator = gan.load_generator(record.path)
    else:
        generator = _generator(args)
    scores = gan.score(generator, args.dataset, per_class=args.per_class, cas_images=args.cas, data_root=args.data)
    if args.ship:
        gan.record_scores(record, scores)
        print(f"scores recorded in {record.folder / checkpoints.MANIFEST}", file=sys.stderr)
    if args.json:
        emit(scores.to_json())
        return 0
    classes = data.get_spec(args.dataset).classes
    print(f"label agreement {scores.agreement:.2f}% overall; judge: {get_card(scores.judge).title}, "
          f"{scores.judge_accuracy:.2f}% on real test images ('real images %' below, per class)")
    print(f"{'class':<12} {'agreement %':>11} {'real images %':>13} {'diversity':>10}")
    for name, agreement, real, ratio in zip(classes, scores.agreement_per_class, scores.real_agreement_per_class,
                                            scores.diversity_ratio, strict=True):
        print(f"{name:<12} {agreement:>11.2f} {real:>13.2f} {100 * ratio:>9.0f}%")
    print(f"FID on the judge's features: {scores.fid:.3f} (real training digits: {scores.fid_reference:.3f})")
    if scores.cas is not None:
        print(f"a LeNet trained on {args.cas:,} generated digits only: {scores.cas:.2f}% on the real test set")
    return 0


# --- export -----------------------------------------------------------------------------------

def read_spec(path: str) -> spec.Spec:
    """A spec file, parsed and checked; SpecError (a ValueError) naming the file and the problem."""
    try:
        document = Path(path).read_bytes()
    except OSError as error:
        raise spec.SpecError(f"{path}: {error.strerror or error}") from error
    network = spec.parse(document)
    spec.check(network)
    spec.check_budget(network)
    return network


def cmd_export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix != ".py":
        raise ValueError(f"--out must name a .py file, got {out.name!r}")
    arch = spec.register(read_spec(args.spec)) if args.spec else args.arch
    source = export.script(recipe(arch, args.dataset), file=out.name)
    try:
        out.write_text(source, encoding="utf-8")
    except OSError as error:
        raise ValueError(f"could not write {out}: {error.strerror or error}") from error
    if args.json:
        emit({"arch": arch, "dataset": args.dataset, "out": str(out)})
    else:
        print(f"wrote {out}: python {out} trains it on {data.get_spec(args.dataset).title}")
    return 0


# --- predict ----------------------------------------------------------------------------------

def cmd_predict(args: argparse.Namespace) -> int:
    ensemble = Ensemble.for_dataset(args.dataset)
    for name, problem in ensemble.problems.items():
        print(f"warning: {name} left out: {problem}", file=sys.stderr)
    if not len(ensemble):
        raise ValueError(f"no trained {args.dataset} models found: train one with `python -m core train`")
    classes = data.get_spec(args.dataset).classes
    results, failed = [], 0
    for path in args.images:
        row: dict = {"image": path}
        problem = None
        try:
            stages = preprocess.prepare(preprocess.read_image_file(path), dataset=args.dataset, naive=args.naive)
            if stages.empty:
                raise preprocess.ImageError(i18n.Message("cli.nothing", image=path, problem=stages.problem))
            row |= ensemble.predict(stages.tensor(args.dataset))[0].to_json(classes)
        except preprocess.ImageError as error:
            row["error"], problem = str(error), error
            failed += 1
        results.append(row)
        if not args.json:
            print_prediction(row, problem, args.lang)
    if args.json:
        emit(results)
    return 1 if failed else 0


def print_prediction(row: dict, error: Exception | None, language: str) -> None:
    say = i18n.texts("cli", language)
    if error is not None:
        print(say["predict_error"].format(image=row["image"], error=i18n.in_language(error, language)))
        return
    consensus = row["consensus"]

    def label(english: str) -> str:
        return i18n.translated("classes", english, language)

    print(say["predict_answer"].format(image=row["image"], label=label(consensus["label"]),
                                       probability=100 * consensus["probability"]))
    for model in row["models"]:
        mark = "" if model["digit"] == consensus["digit"] else say["disagrees"]
        print(say["predict_model"].format(name=model["shown_as"], label=label(model["label"]),
                                          probability=100 * model["probability"], ms=model["milliseconds"], mark=mark))
    for name, reason in row["left_out"].items():
        print(say["left_out"].format(name=name, reason=i18n.in_language(reason, language)))


# --- parser -----------------------------------------------------------------------------------

def _bool_flag(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=None, help=help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="MNIST CNN Lab from the command line.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        sub.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        sub.add_argument("--lang", choices=list(i18n.LANGUAGES), default=i18n.server_language() or i18n.DEFAULT,
                         help=f"the language of human-readable output (default: ${i18n.LANG_ENV}, else en)")
        return sub

    def data_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--data", metavar="DIR", help=f"data root (default: ${data.DATA_ENV}, else ./data)")
        sub.add_argument("--device", help="cuda, mps or cpu (default: the best available)")

    command("list", cmd_list, "the architecture zoo: name, year, parameters, MACs, idea")

    train = command("train", cmd_train, "train one architecture and save it (defaults: its recipe)")
    which = train.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", choices=list_models())
    which.add_argument("--spec", metavar="FILE", help="a network built layer by layer: a spec file (JSON)")
    which.add_argument("--all", action="store_true",
                       help="every architecture with its recipe, one after the other; skips what is saved "
                            "with the same recipe and resumes an interrupted one")
    train.add_argument("--dataset", default="mnist", choices=list(data.DATASETS))
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float, help="learning rate (the peak, for one-cycle)")
    train.add_argument("--optimizer", choices=OPTIMIZERS)
    train.add_argument("--momentum", type=float, help="SGD momentum")
    _bool_flag(train, "nesterov", "Nesterov momentum (SGD)")
    train.add_argument("--schedule", choices=SCHEDULES)
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--label-smoothing", type=float)
    _bool_flag(train, "augment", "random shifts (and mirroring, on Fashion-MNIST)")
    _bool_flag(train, "warp", "with --augment: small random rotations and scales too (--no-warp: whole-pixel "
                              "shifts only, which keep pictures sharp)")
    train.add_argument("--erase", type=float, metavar="P",
                       help="with --augment: share of images with a random rectangle erased (0 to 1)")
    train.add_argument("--val-split", type=float, help="fraction held out for validation (default 0.1)")
    train.add_argument("--patience", type=int, help="early stopping after N epochs without improvement; 0: off")
    train.add_argument("--seed", type=seed)
    train.add_argument("--limit", type=int, metavar="N", help="train on the first N images only")
    train.add_argument("--width", type=float, help="channel width multiplier")
    train.add_argument("--resolution", type=int, choices=sorted({paper.ZOO, *paper.RESOLUTION.values()}),
                       help="28: the lab's digits (default); the paper's input (224, or 32 for lenet5) trains the "
                            "paper's network on upsampled digits and records its figures for Compare")
    train.add_argument("--name", help="run name, any script (default: the arch; a taken name gets -2, -3, ...)")
    train.add_argument("--ship", action="store_true", help="save into weights/ as the shipped model")
    train.add_argument("--sync-bn", action="store_true",
                       help="under torchrun, batch norm with the statistics of the whole batch over every rank")
    data_options(train)

    exporter = command("export", cmd_export, "one standalone PyTorch script that trains an architecture with its "
                                             "recipe (no import of this lab)")
    source = exporter.add_mutually_exclusive_group(required=True)
    source.add_argument("--arch", choices=list_models())
    source.add_argument("--spec", metavar="FILE", help="a network built layer by layer: a spec file (JSON)")
    exporter.add_argument("--dataset", default="mnist", choices=list(data.DATASETS))
    exporter.add_argument("--out", required=True, metavar="FILE.py")

    evaluate_ = command("eval", cmd_eval, "test accuracy of every trained model found")
    evaluate_.add_argument("--dataset", choices=list(data.DATASETS))
    evaluate_.add_argument("--only", choices=("shipped", "runs"), help="only the shipped models, or only runs")
    data_options(evaluate_)

    predict = command("predict", cmd_predict, "every trained model's answer for pictures of digits")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    predict.add_argument("--dataset", default="mnist", choices=list(data.DATASETS))
    predict.add_argument("--naive", action="store_true",
                         help="squash the picture to 28x28 instead of the dataset's own recipe")

    cgan = commands.add_parser("cgan", help="conditional GAN: train, sample, export, score",
                               description="A conditional GAN that draws digits of a chosen class.")
    cgan_commands = cgan.add_subparsers(dest="cgan_command", required=True, metavar="COMMAND")

    def cgan_command(name: str, run, help: str) -> argparse.ArgumentParser:
        sub = cgan_commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        sub.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        sub.add_argument("--dataset", default="mnist", choices=list(data.DATASETS))
        sub.add_argument("--seed", type=seed, default=0)
        sub.add_argument("--data", metavar="DIR", help=f"data root (default: ${data.DATA_ENV}, else ./data)")
        return sub

    gan_train = cgan_command("train", cmd_cgan_train, "train a generator and its discriminator, then score it")
    gan_train.add_argument("--epochs", type=int, default=20)
    gan_train.add_argument("--batch-size", type=int, default=128)
    gan_train.add_argument("--limit", type=int, metavar="N", help="train on the first N images only")
    gan_train.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    gan_train.add_argument("--name", help="run name (default: cgan-generator; a taken name gets -2, -3, ...)")
    gan_train.add_argument("--ship", action="store_true", help="save into weights/ as the shipped generator")
    for name, run, help in (("sample", cmd_cgan_sample, "generated digits as one grid PNG or a folder of PNGs"),
                            ("export", cmd_cgan_export, "a synthetic dataset as CSV (label, 784 pixels), .npz or .pt"),
                            ("score", cmd_cgan_score, "label agreement, diversity, FID and classification score")):
        sub = cgan_command(name, run, help)
        sub.add_argument("--weights", metavar="FILE", help="a generator file (default: the shipped one)")
        if name == "sample":
            sub.add_argument("--digit", type=int, choices=range(10), help="one class (default: all, in turn)")
            sub.add_argument("--n", type=positive, default=64)
            sub.add_argument("--out", required=True, help="grid.png, or a folder for one PNG per digit")
        elif name == "export":
            sub.add_argument("--n", type=positive, default=6000)
            sub.add_argument("--out", required=True, help="fake.csv, fake.npz or fake.pt")
        else:
            sub.add_argument("--per-class", type=positive, default=gan.SHIPPED_PER_CLASS,
                             help="generated digits per class")
            sub.add_argument("--cas", type=int, default=gan.SHIPPED_CAS_IMAGES, metavar="N",
                             help="train a LeNet on N generated digits and test it on real ones (0: skip)")
            sub.add_argument("--ship", action="store_true",
                             help="score the shipped generator and record the scores in weights/manifest.json "
                                  "(the most accurate shipped classifier judges: rescore when it changes)")

    clean = command("clean", cmd_clean, "remove what interrupted saves left behind: temporary files, and weights "
                                         "files that no manifest lists")
    clean.add_argument("--dry-run", action="store_true", help="only list what would be removed")

    bench_parser = command("bench", cmd_bench, "measured speed: the training pipeline and drawing to answers, or with "
                                  "--zoo every trained model side by side")
    bench_parser.add_argument("--dataset", choices=list(data.DATASETS),
                             help="the drawing figure's dataset (default mnist); with --zoo, only its models")
    bench_parser.add_argument("--skip-cgan", action="store_true", help="leave out the CGAN epoch (a minute on a CPU)")
    bench_parser.add_argument("--cgan-images", type=int, default=None, metavar="N",
                              help="time the CGAN epoch on the first N training images (default: all)")
    bench_parser.add_argument("--zoo", action="store_true",
                             help="every trained model's size, accuracy, training cost, and latency and throughput on "
                            "this machine's CPU and GPU (cached per machine)")
    bench_parser.add_argument("--refresh", action="store_true", help="with --zoo: time again, ignoring the cache")
    bench_parser.add_argument("--paper", action="store_true",
                              help="the lab report's table: LeNet-5 at 32x32 and six classics at 224x224 at their "
                                   "papers' sizes, trained here (a GPU's work: hours on a CPU)")
    bench_parser.add_argument("--only", metavar="ARCH,...",
                              help=f"with --paper: these of {', '.join(paper.RESOLUTION)}")
    bench_parser.add_argument("--epochs", type=int, default=5, help="with --paper: epochs (the report's 5)")
    bench_parser.add_argument("--limit", type=int, metavar="N", help="with --paper: the first N training images only")
    bench_parser.add_argument("--repeats", type=int, default=3,
                             help="with --zoo: timed runs at batch 256 (single images: ten times as many)")
    bench_parser.add_argument("--batches", type=int, default=300, help="batches per pipeline and round")
    bench_parser.add_argument("--rounds", type=int, default=5, help="timed rounds (medians are reported)")
    bench_parser.add_argument("--batch-size", type=int, default=64)
    data_options(bench_parser)
    return parser


def seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**63:  # torch seeds are 64-bit
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {2**63 - 1}, got {value}")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for problem in checkpoints.manifest_problems():
        print(f"warning: {problem}", file=sys.stderr)
    try:
        return args.run(args)
    except (ValueError, TrainingError, data.DatasetNotFound, checkpoints.CheckpointError,
            distributed.DistributedError) as error:
        print(f"error: {i18n.in_language(error, getattr(args, 'lang', i18n.DEFAULT))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
