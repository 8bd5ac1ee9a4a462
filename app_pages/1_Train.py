"""Train: any architecture on either dataset, live curves, runs shared by the whole server."""

from dataclasses import replace

import streamlit as st

import builder
import ui
from core import checkpoints, data, export, spec
from core.jobs import JobSnapshot, Limits
from core.models import SPEC_PREFIX, get_card, list_models
from core.recipes import recipe
from core.training import OPTIMIZERS, SCHEDULES, clock

TEXT = ui.texts("train")
LEARNING_RATES = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 3e-2, 5e-2, 0.1, 0.3, 1.0]
WEIGHT_DECAYS = [0.0, 1e-5, 1e-4, 5e-4, 1e-3, 1e-2, 0.05, 0.1]
IMAGE_LIMITS = {500: "500", 2000: "2,000", 10_000: "10,000", data.TRAIN_SIZE: TEXT["all_images"]}

dataset = ui.dataset()
manager = ui.job_manager()
owner = ui.session_id()
teacher = ui.teacher_key()  # None for a student

st.title(TEXT["title"])
st.write(TEXT["intro"])

BUILD = "build"  # the architecture choice that opens the builder
settings, card = st.columns([3, 2], gap="large")
below = st.container()  # the builder's layers, full width under the settings
with card:
    choice = st.selectbox(TEXT["arch"], [BUILD, *list_models()], key=ui.kept("arch", "lenet5"),
                          format_func=lambda name: TEXT["build"] if name == BUILD else get_card(name).title)
if choice == BUILD:
    network = builder.network_builder(card, below, dataset=dataset, owner=owner)
    arch = spec.architecture(network) if network else SPEC_PREFIX  # a built network's recipe, valid or not yet
else:
    network, arch = None, choice
    with card:
        ui.architecture_card(arch)
        st.download_button(TEXT["export"], lambda: export.script(recipe(arch, dataset), file=f"{arch}.py"),
                           file_name=f"{arch}.py", mime="text/x-python", icon=":material/code:",
                           help=TEXT["export_help"], on_click="ignore")  # written when clicked

default = recipe(arch, dataset)


def field(name: str, value: object) -> str:
    """The key of a setting: its own for each architecture and dataset (their recipes differ), kept for the
    session, starting from the recipe; one for every built network."""
    return ui.kept(f"{name}-{choice}-{dataset}", value)


# Not a form: a form sends its values only when it is submitted, so a page switch lost every setting not yet
# used to start a run; and the estimate follows the settings as they change.
with settings:
    st.caption(TEXT["settings"])
    left, right = st.columns(2)
    optimizer = left.selectbox(TEXT["optimizer"], OPTIMIZERS, key=field("opt", default.optimizer))
    schedule = right.selectbox(TEXT["schedule"], SCHEDULES, key=field("sched", default.schedule))
    lr = left.select_slider(TEXT["lr"], sorted(set(LEARNING_RATES + [default.lr])), format_func=lambda v: f"{v:g}",
                            key=field("lr", default.lr))
    batch_size = right.select_slider(TEXT["batch"], [16, 32, 64, 128, 256, 512], key=field("batch", default.batch_size))
    epochs = left.slider(TEXT["epochs"], 1, max(30, default.epochs), key=field("epochs", default.epochs))
    weight_decay = right.select_slider(TEXT["weight_decay"], sorted(set(WEIGHT_DECAYS + [default.weight_decay])),
                                       format_func=lambda v: f"{v:g}", key=field("wd", default.weight_decay))
    label_smoothing = left.slider(TEXT["smoothing"], 0.0, 0.3, step=0.05, key=field("ls", default.label_smoothing))
    val_split = right.slider(TEXT["val"], 0.0, 0.3, step=0.05, help=TEXT["val_help"],
                             key=field("val", default.val_split))
    patience = left.number_input(TEXT["patience"], 0, 30, help=TEXT["patience_help"],
                                 key=field("pat", default.patience))
    seed = right.number_input(TEXT["seed"], 0, 2**31 - 1, key=field("seed", default.seed))
    limit = left.select_slider(TEXT["images"], list(IMAGE_LIMITS), format_func=IMAGE_LIMITS.get,
                               key=field("limit", data.TRAIN_SIZE))
    erase = right.slider(TEXT["erase"], 0.0, 1.0, step=0.25, help=TEXT["erase_help"], key=field("erase", default.erase))
    augment = left.toggle(TEXT["augment"], help=TEXT["augment_help"], key=field("aug", default.augment))
    warp = right.toggle(TEXT["warp"], help=TEXT["warp_help"], key=field("warp", default.warp))
    name = st.text_input(TEXT["name"], max_chars=60,
                         key=field("name", f"{'mynet' if choice == BUILD else arch}-{owner[:4]}"))
    config = replace(
        default, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, schedule=schedule,
        weight_decay=weight_decay, label_smoothing=label_smoothing, augment=augment, warp=warp, erase=erase,
        val_split=val_split, patience=int(patience), seed=int(seed), limit=None if limit == data.TRAIN_SIZE else limit,
    )
    estimate = manager.estimate(config)
    if estimate:
        st.caption(TEXT["estimate"].format(run=clock(estimate.seconds), epochs=epochs,
                                           images=min(limit, data.TRAIN_SIZE), basis=ui.say(estimate.basis)))
    else:
        st.caption(TEXT["no_estimate"])
    if not ui.teacher_key():
        st.caption(TEXT["limits"].format(queued=manager.limits.queued_per_student,
                                         images=manager.limits.epoch_images))
    if st.button(TEXT["start"], type="primary", icon=":material/play_arrow:",
                 disabled=choice == BUILD and network is None):
        if network:
            config = replace(config, arch=spec.register(network))
        ui.submit_job(config, name=name, owner=owner, shown_key="shown_job")


def show(job: JobSnapshot) -> None:
    job = ui.job_status(job, owner=owner)
    if job.steps:
        loss, accuracy = ui.loss_and_accuracy_charts(job)
        left, right = st.columns(2)
        left.plotly_chart(loss, width="stretch")
        right.plotly_chart(accuracy, width="stretch")
    if job.result:
        st.success(TEXT["done" if job.status == "done" else "stopped"].format(name=ui.plain(job.name)))
        if job.result.get("divergence"):
            st.warning(ui.say(job.result["divergence"]))
        a, b, c = st.columns(3)
        a.metric(TEXT["test_accuracy"], f"{job.result['test_accuracy']:.2f} %")
        b.metric(TEXT["best_epoch"], job.result["best_epoch"] or "–")  # 0: stopped within the first epoch
        c.metric(TEXT["seconds"], clock(job.result["seconds"]))
        st.plotly_chart(ui.confusion_chart(job.result["confusion"], ui.classes(job.config.dataset)), width="stretch")


def queue_table(jobs: list[JobSnapshot]) -> None:
    columns, status = TEXT["queue_columns"], ui.texts("status")
    st.dataframe(
        [{columns["run"]: j.name, columns["training"]: ui.say(j.title),
          columns["status"]: TEXT["queued_at"].format(position=j.position) if j.position else status[j.status],
          columns["progress"]: round(100 * j.progress),
          columns["test_accuracy"]: f"{j.result['test_accuracy']:.2f} %" if j.result and "test_accuracy" in j.result
          else "–",  # not "None": a run not finished, or a timing job
          columns["started_by"]: TEXT["you"] if j.owner == owner else teacher and j.owner[:4] or TEXT["someone"]}
         for j in reversed(jobs)],
        hide_index=True, width="stretch",
        column_config={columns["progress"]: st.column_config.ProgressColumn(min_value=0, max_value=100,
                                                                            format="%d%%")},
    )


polling = manager.busy()


@st.fragment(run_every=ui.LIVE_EVERY if polling else None)
def live() -> None:
    everyone = manager.snapshots(history=False)  # the curves of the one run on screen alone, below
    jobs = [j for j in everyone if j.kind == "classifier"]  # Generate shows the GAN's runs, Compare the timings
    st.header(TEXT["live"])
    if jobs:
        show(manager.snapshot(ui.pick_job(jobs, owner=owner, shown_key="shown_job").id))
    else:
        st.info(TEXT["nothing"])
    if everyone:
        st.subheader(TEXT["queue"])
        queue_table(everyone)
    if polling and not manager.busy():
        st.rerun()  # everything finished: one full run to stop polling


live()


def your_runs() -> None:
    """This student's saved runs (the teacher: everyone's), each with a button that deletes it."""
    mine = [r for r in checkpoints.read_manifest(checkpoints.runs_dir()) if teacher or r.owner == owner]
    if not mine:
        return
    with st.expander(TEXT["everyone_runs" if teacher else "mine"].format(count=len(mine))):
        for record in mine:
            left, right = st.columns([5, 1], vertical_alignment="center")
            headline = TEXT["headline"][record.kind].format(value=record.metrics[checkpoints.HEADLINE[record.kind]])
            left.write(f"**{ui.plain(record.name)}** · {data.get_spec(record.dataset).title} · {headline}")
            if right.button(TEXT["delete"], key=f"delete-{record.file}", icon=":material/delete:"):
                manager.delete_run(record, owner=owner, teacher_key=teacher)
                st.toast(TEXT["deleted"].format(name=ui.plain(record.name)))
                st.rerun()


your_runs()


def teacher_limits() -> None:
    """What students may ask of the machine; the teacher's to change."""
    limits = manager.limits
    with st.expander(TEXT["teacher_limits"], icon=":material/school:"), st.form("limits", border=False):
        queued = st.number_input(TEXT["queued_limit"], 1, 100, limits.queued_per_student)
        images = st.number_input(TEXT["images_limit"], 1_000, 100_000_000, limits.epoch_images, step=60_000)
        if st.form_submit_button(TEXT["save_limits"]):
            manager.set_limits(Limits(int(queued), int(images)), teacher_key=teacher)
            st.toast(TEXT["limits_saved"])


if teacher:
    teacher_limits()
