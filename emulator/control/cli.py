"""The `emulator` command: start, stop, inspect and reset the two emulated workspaces."""

from __future__ import annotations

import json
import logging
import os
import sys

import click

from emulator import settings
from emulator.control import launcher, s3_store, status
from emulator.control.state import StateDir

ROLE = click.Choice(settings.ROLES)


def _state_option(fn):
    return click.option(
        "--state-dir",
        envvar=settings.STATE_DIR_ENV,
        default=settings.DEFAULT_STATE_DIR,
        show_default=True,
        help="Where both workspaces keep their stores, artifacts and logs.",
    )(fn)


def _fail(message: str, code: int = 1):
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


@click.group()
def main():
    """Local stand-ins for an Azure Databricks and an Azure ML workspace (MLflow tracking)."""


@main.command()
@_state_option
@click.option("--host", default=settings.DEFAULT_HOST, show_default=True)
@click.option("--timeout", default=None, type=float, help="Seconds to wait for /health [90; 240 with --docker].")
@click.option("--docker", is_flag=True, help="Run them as Docker Compose services instead of local processes.")
@click.option("--compose-file", default=None, help="[--docker] Defaults to the one the package ships (a checkout's own).")
@click.option("--project-name", envvar="EMULATOR_COMPOSE_PROJECT", default="mlflow-azure-emulator",
              show_default=True, help="[--docker] The Compose project (names the containers and volumes).")
@click.option("--spark", is_flag=True,
              help="[--docker] Also start a Spark standalone cluster (services spark-master, spark-worker).")
@click.option("--spark-workers", default=2, show_default=True, type=click.IntRange(1, 16),
              help="[--spark] How many workers (`--scale spark-worker=N`).")
@click.option("--store", type=click.Choice(["sqlite", "postgres"]), default="sqlite", show_default=True,
              help="[--docker] Where the MLflow stores live: SQLite in each workspace's volume, or the "
                   "Compose `postgres` service (a database per workspace).")
@click.option("--notebook-jobs", is_flag=True,
              help="[--docker] Run the Databricks workspace on the notebook-jobs image (Java and PySpark for "
                   "its jobs' notebook tasks; build it with `emulator images build --offline --notebook-jobs`).")
def up(state_dir, host, timeout, docker, compose_file, project_name, spark, spark_workers, store, notebook_jobs):
    """Start both workspaces and wait until they answer /health."""
    state = StateDir(state_dir)
    if spark and not docker:
        _fail("--spark runs the cluster under Compose: use it with --docker")
    if notebook_jobs and not docker:
        _fail("--notebook-jobs picks the Databricks service's image under Compose: use it with --docker "
              "(local processes already run notebook tasks in this Python)")
    if docker:
        _up_docker(state, compose_file, project_name, timeout or 240.0, spark_workers if spark else 0, store,
                   notebook_jobs)
        return
    if store != "sqlite":
        _fail("--store postgres needs --docker (local processes: set EMULATOR_POSTGRES_URL to a server you run)")
    if state.deployment().get("mode") == "docker":
        _fail("this state dir runs in Docker mode; `emulator down` first (or use another --state-dir)")
    timeout = timeout or 90.0
    already = {role for role in settings.ROLES if launcher.running(state, role)}
    s3_already = s3_store.running_url(state) is not None
    try:
        # One process imports MLflow once and forks both servers (emulator.control.prefork).
        started = launcher.start_all(state, [launcher.Launch(role, host) for role in settings.ROLES])
        state.record_deployment("local")
        # Unity Catalog model files: started alongside the workspaces, not after them.
        launcher.wait_healthy(state, started, timeout=timeout,
                              alongside=lambda: s3_store.start(state, host=host, timeout=timeout))
    except (launcher.LaunchError, ValueError) as exc:
        # A failed `up` leaves nothing of its own running (what ran before it stays).
        for role in set(settings.ROLES) - already:
            launcher.stop(state, role)
        if not s3_already:
            s3_store.stop(state)
        _fail(str(exc))
    _print_endpoints(state)


def _print_endpoints(state) -> None:
    info = status.collect(state)
    for role in settings.ROLES:
        click.echo(f"{role:>10}: {info[role]['url']}  (UI: {info[role]['ui']})")


def _up_docker(state, compose_file, project_name, timeout, spark_workers=0, store="sqlite", notebook_jobs=False):
    from emulator.control.docker import compose

    try:
        overrides = [_notebook_jobs_override()] if notebook_jobs else []
        deployment = compose.Deployment(compose_file or compose.default_compose_file(), project_name, store=store,
                                        overrides=overrides)
        click.echo(f"starting Compose project {project_name} with `{' '.join(deployment.command)}`"
                   + (" (MLflow stores on PostgreSQL)" if store == "postgres" else ""))
        deployment.up(state, timeout=timeout, spark_workers=spark_workers)
    except (compose.ComposeError, ValueError) as exc:
        _fail(str(exc))
    _print_endpoints(state)
    spark = state.deployment().get("spark")
    if spark:
        click.echo(f"{'spark':>10}: {spark['master_url']}  ({spark['workers']} workers; UI: {spark['ui_url']})")
        click.echo(f"            harness check --spark-master {spark['master_url']}")


def _notebook_jobs_override():
    """docker/notebook-jobs/compose.yml of this checkout, once its image is built (the image needs the
    checkout's docker/ folder too, so an installed wheel has neither)."""
    from emulator.control.docker import compose, engine, images, jobs_image

    try:
        override = images.project_root().joinpath(*jobs_image.FOLDER, "compose.yml")
    except images.BuildError as exc:
        raise compose.ComposeError(f"--notebook-jobs: {exc}") from None
    if not override.is_file():
        raise compose.ComposeError(f"{override} is missing: --notebook-jobs runs from a source checkout")
    image = os.environ.get(jobs_image.IMAGE_ENV) or jobs_image.IMAGE
    try:
        built = engine.image_id(image)
    except engine.EngineError as exc:
        raise compose.ComposeError(str(exc)) from None
    if built is None:
        raise compose.ComposeError(f"the Docker engine has no image {image}; build it: "
                                   "`emulator images build --offline --notebook-jobs`")
    return override


def _down_docker(state, volumes=False) -> bool:
    """Stop the recorded Compose deployment, if this state dir has one."""
    from emulator.control.docker import compose

    deployment = compose.Deployment.recorded(state)
    if deployment is None:
        return False
    try:
        deployment.down(state, volumes=volumes)
    except compose.ComposeError as exc:
        _fail(str(exc))
    click.echo(f"stopped Compose project {deployment.project}" + (" and deleted its volumes" if volumes else ""))
    return True


@main.command()
@_state_option
@click.option("--docker", is_flag=True, help="Stop the Compose deployment (the default when one is recorded).")
@click.option("--volumes", "-v", is_flag=True, help="[Docker] Also delete the workspaces' volumes.")
def down(state_dir, docker, volumes):
    """Stop both workspaces; their state stays for the next `up`."""
    state = StateDir(state_dir)
    if _down_docker(state, volumes=volumes):
        return
    if docker:
        click.echo("no Docker deployment is recorded for this state dir")
        return
    for role in settings.ROLES:
        if launcher.stop(state, role):
            click.echo(f"stopped {role}")
    if s3_store.stop(state):
        click.echo("stopped s3 (Unity Catalog model files)")


@main.command()
@_state_option
@click.argument("role", type=ROLE)
def stop(state_dir, role):
    """Stop one workspace (to simulate that backend being down)."""
    if not launcher.stop(StateDir(state_dir), role):
        click.echo(f"{role} was not running")


@main.command()
@_state_option
@click.argument("role", type=ROLE)
@click.option("--host", default=settings.DEFAULT_HOST, show_default=True)
@click.option("--timeout", default=90.0, show_default=True)
def start(state_dir, role, host, timeout):
    """Start one workspace again, on the ports it had (unless the environment names others)."""
    state = StateDir(state_dir)
    try:
        proc = launcher.start_all(state, [launcher.remembered_launch(state, role, host)])[0]
        launcher.wait_healthy(state, [proc], timeout=timeout)
    except (launcher.LaunchError, ValueError) as exc:
        _fail(str(exc))
    click.echo(f"{role}: {proc.url}")


@main.command("status")
@_state_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(state_dir, as_json):
    """Where the workspaces are, their tokens, and whether they are healthy.

    Exit 0: both run; 3: a workspace of this state dir is down (servers that other state dirs
    started on the same ports do not count); 2: the state dir holds no emulator at all ("not
    running here"). Reads only: creates nothing."""
    state = StateDir(state_dir)
    try:
        info = status.collect(state)
    except status.NotRunningHere as exc:
        if as_json:
            click.echo(json.dumps({"state_dir": exc.state_dir, "running": False, "error": str(exc)}, indent=2))
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(f"mode: {info['mode']}   linked: {info['linked']}   state: {info['state_dir']}")
        for role in settings.ROLES:
            ws = info[role]
            health = click.style("healthy", fg="green") if ws["healthy"] else click.style("down", fg="red")
            click.echo(f"{role:>10}: {ws['url']}  {health}  token={ws['token']}")
        click.echo(f"AML tracking URI: {info['azureml']['tracking_uri']}")
        click.echo(f"Unity Catalog model files: MLFLOW_S3_ENDPOINT_URL={info['s3']['url']}"
                   + ("" if info["s3"]["healthy"] else "  (down)"))
        if info.get("mirror"):
            m = info["mirror"]
            click.echo(f"mirror: backlog={m.get('backlog')} failed={m.get('failed')} "
                       f"delivered={m.get('delivered')} last_error={m.get('last_error')}")
    if not any(info[r]["healthy"] for r in settings.ROLES):
        click.secho(f"not running here: no workspace started from {info['state_dir']} answers "
                    "(servers other state dirs started do not count; `emulator up` starts them)", fg="red", err=True)
    sys.exit(0 if all(info[r]["healthy"] for r in settings.ROLES) else 3)


@main.command()
@_state_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--live", is_flag=True,
              help="Empty the running workspaces in place (well under a second) instead of deleting the state dir.")
def reset(state_dir, yes, live):
    """Stop everything and delete all state (runs, models, artifacts, tokens); --live: empty both
    running workspaces in place, keeping tokens, ports and the link."""
    state = StateDir(state_dir)
    if live:
        from emulator.control.live_reset import request_reset

        info = status.collect(state)
        down = [r for r in settings.ROLES if not info[r]["healthy"]]
        if down:
            raise click.ClickException(f"not running here ({state.root}): {', '.join(down)}; `emulator up` first")
        for role in settings.ROLES:  # both together: a linked pair's mirror state goes with its stores
            took = request_reset(info[role]["url"], info[role]["token"])["seconds"]
            click.echo(f"{role}: emptied in {took:.3f} s")
        return
    if not yes:
        click.confirm(f"Delete everything under {state.root}?", abort=True)
    _down_docker(state, volumes=True)
    for role in settings.ROLES:
        launcher.stop(state, role)
    s3_store.stop(state)
    state.wipe()
    click.echo(f"deleted {state.root}")


@main.command()
@_state_option
@click.argument("role", type=ROLE)
@click.option("-n", "--lines", default=50, show_default=True)
def logs(state_dir, role, lines):
    """Print the last lines of a workspace's server log."""
    from emulator.control.docker import compose

    deployment = compose.Deployment.recorded(StateDir(state_dir))
    if deployment is not None:  # Docker mode: the container's output
        click.echo(deployment.logs(role, tail=lines))
        return
    click.echo(launcher.tail(launcher.log_path(StateDir(state_dir), role), lines))


@main.command()
@_state_option
@click.option("--role", type=ROLE, required=True)
@click.option("--host", default=settings.DEFAULT_HOST, show_default=True)
@click.option("--port", type=int, default=None, help="Defaults to the role's port.")
@click.option("--public-url", default=None, help="How clients reach this server, if not host:port.")
@click.option("--threads", default=8, show_default=True)
@click.option("--tls-port", type=int, default=None,
              help=f"[azureml] HTTPS port [{settings.AZUREML_TLS_PORT_ENV} or {settings.DEFAULT_AZUREML_TLS_PORT}; 0: none].")
@click.option("--proxy-port", type=int, default=None,
              help=f"[azureml] CONNECT proxy port [{settings.AZUREML_PROXY_PORT_ENV} or "
                   f"{settings.DEFAULT_AZUREML_PROXY_PORT}; 0: none].")
@click.option("--tls-public-port", type=int, default=None, help="[azureml] HTTPS port as clients reach it.")
def serve(state_dir, role, host, port, public_url, threads, tls_port, proxy_port, tls_public_port):
    """Run one workspace in the foreground (used by `up` and by the Docker image)."""
    from emulator.workspace.app import serve as run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state = StateDir(state_dir)
    state.ensure()
    port = settings.port_for(role) if port is None else port
    extra = {}
    if role == "azureml":
        defaults = settings.azureml_extra_ports()
        extra = {"tls_port": defaults["tls"] if tls_port is None else tls_port,
                 "proxy_port": defaults["proxy"] if proxy_port is None else proxy_port,
                 "tls_public_port": tls_public_port}
    run(launcher.server_config(state, role, host, port, public_url, **extra), threads=threads)


@main.group()
def images():
    """The Docker image both Compose services run."""


@images.command("build")
@click.option("--offline", is_flag=True,
              help="No registry: debootstrap a Debian base, build wheels on the host, pip install --no-index.")
@click.option("--image", default=None, help="Tag to build (default: mlflow-azure-emulator:latest).")
@click.option("--base-image", default=None, help="Use this base instead of building/pulling one.")
@click.option("--force", is_flag=True, help="Rebuild the image even if it is current.")
@click.option("--spark", is_flag=True, help="[--offline] Also the Spark image (for `emulator up --docker --spark`).")
@click.option("--postgres", is_flag=True,
              help="Also build the PostgreSQL image (Debian's package, offline) for `up --docker --store postgres`.")
@click.option("--notebook-jobs", is_flag=True,
              help="[--offline] Also the notebook-jobs image: the Databricks workspace with Java and PySpark "
                   "for its jobs' notebook tasks (docker/notebook-jobs/compose.yml runs it).")
def images_build(offline, image, base_image, force, spark, postgres, notebook_jobs):
    """Build the emulator image (idempotent: current steps are reused)."""
    from emulator.control.docker import images as docker_images

    if (spark or notebook_jobs) and not offline:
        _fail("--spark and --notebook-jobs build offline only (Debian's JRE by debootstrap): add --offline")
    results = []
    try:
        results.append(docker_images.build(offline=offline, image=image or docker_images.IMAGE,
                                           base_image=base_image, force=force))
        if postgres:
            from emulator.control.docker import postgres_image

            results.append(postgres_image.build(force=force))
        if spark:
            from emulator.control.docker import spark_image

            results.append(spark_image.build(force=force))
        if notebook_jobs:
            from emulator.control.docker import jobs_image

            results.append(jobs_image.build(emulator_image=image or docker_images.IMAGE, force=force))
    except docker_images.BuildError as exc:
        _fail(str(exc))
    for result in results:
        took = ", ".join(f"{k} {v:.1f}s" for k, v in result["seconds"].items())
        click.echo(f"built {result['image']} ({took})")



@main.command("link")
@_state_option
@click.option("--azureml-url", default=None,
              help="How the Databricks workspace reaches Azure ML (default: $EMULATOR_AZUREML_INTERNAL_URL, "
                   "else the Azure ML workspace's URL).")
def link_cmd(state_dir, azureml_url):
    """Link the Databricks workspace to the Azure ML one: its MLflow tracking is mirrored there."""
    from emulator.control import mirror_link as control

    state = StateDir(state_dir)
    try:
        result = control.link_workspaces(state, status.workspace_url(state, "databricks"), azureml_url)
    except (control.ControlError, ValueError) as exc:
        _fail(str(exc))
    click.echo(json.dumps({k: v for k, v in result.items() if "token" not in k}, indent=2))


@main.command("unlink")
@_state_option
def unlink_cmd(state_dir):
    """Stop mirroring new writes (what was already acknowledged still reaches Azure ML)."""
    from emulator.control import mirror_link as control

    state = StateDir(state_dir)
    try:
        result = control.unlink_workspaces(state, status.workspace_url(state, "databricks"))
    except control.ControlError as exc:
        _fail(str(exc))
    click.echo(json.dumps(result, indent=2))


from emulator.control import cli_faults  # noqa: E402  (`emulator fault ...`, `emulator requests`)

cli_faults.register(main)

if __name__ == "__main__":
    main()
