"""The `fieldlab` command line (typer + rich)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.config import Settings, SettingsError, documented_settings
from app.logs import configure_logging

if TYPE_CHECKING:
    from app.db import Database

# The database layer (SQLAlchemy, SQLModel and the models: ~0.5 s) is imported by the commands
# that use it, so `--help`, `gate` and `serve`'s parent process start without it.

T = TypeVar("T")

app = typer.Typer(
    help="fieldlab: self-hosted frontend performance monitor (field RUM + lab checks + budgets).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
sites_app = typer.Typer(help="Sites: the web properties whose real users send beacons.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens (stored hashed; shown once).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(sites_app, name="sites")
app.add_typer(tokens_app, name="tokens")
check_app = typer.Typer(help="Synthetic checks: run a flow once, from here.", no_args_is_help=True)
app.add_typer(check_app, name="check")
demo_app = typer.Typer(help="The demo shop that `make run` serves at /demo/.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")
marker_app = typer.Typer(help="Deploy markers: where regression comparisons start.", no_args_is_help=True)
app.add_typer(marker_app, name="marker")
config_app = typer.Typer(help="The config file of sites and checks (`serve --config`).", no_args_is_help=True)
app.add_typer(config_app, name="config")

out = Console()
err = Console(stderr=True)


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings.from_env(**overrides)
    except SettingsError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def upgrade_database(url: str, revision: str = "head") -> None:
    from app.db import upgrade_database as upgrade

    upgrade(url, revision)


def ensure_schema(url: str) -> None:
    from app.db import ensure_schema as ensure

    ensure(url)


def _with_db(settings: Settings, fn: Callable[[Database], Awaitable[T]]) -> T:
    from app.db import Database

    if settings.is_sqlite and settings.auto_migrate:
        ensure_schema(settings.database_url)  # an embedded database is ready on first use

    async def run() -> T:
        db = Database(settings)
        try:
            return await fn(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def _fail(message: str) -> typer.Exit:
    # One line whatever the terminal width (rich wraps at 80 columns when piped): CI greps it.
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    return typer.Exit(2)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Bind address [env FIELDLAB_HOST, default 127.0.0.1].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port [env FIELDLAB_PORT, default 8000].")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Server processes [env FIELDLAB_WORKERS]. SQLite: keep 1.")
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            help="YAML file of sites and checks to create or update at start [env FIELDLAB_CONFIG_FILE]."
        ),
    ] = None,
) -> None:
    """Run the fieldlab server (uvicorn). Settings come from FIELDLAB_* variables; see `fieldlab settings`."""
    import uvicorn

    settings = _settings(host=host, port=port, workers=workers, config_file=config)
    configure_logging(settings.log_level)
    if settings.config_file:
        from app.configfile import ConfigError, validate

        try:
            # Fail here, with the reason, not in a worker.
            validate(Path(settings.config_file), flows_dir=Path(settings.flows_dir))
        except ConfigError as exc:
            raise _fail(str(exc)) from None
        os.environ["FIELDLAB_CONFIG_FILE"] = settings.config_file
    if settings.is_sqlite and settings.auto_migrate:
        upgrade_database(settings.database_url)
    # Workers build their own Settings from the environment: pass the CLI flags on that way.
    if not settings.ui_secret:
        from app.ui.auth import stored_secret

        os.environ["FIELDLAB_UI_SECRET"] = stored_secret(Path(settings.data_dir))
    os.environ["FIELDLAB_HOST"] = settings.host
    os.environ["FIELDLAB_PORT"] = str(settings.port)
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fieldlab-metrics-")
    err.print(f"fieldlab on http://{settings.host}:{settings.port} ({settings.workers} worker(s))")
    uvicorn.run(
        "app.server:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        access_log=False,  # per-request lines at beacon rates drown everything else
        timeout_graceful_shutdown=30,
        server_header=False,
        log_config=None,  # uvicorn's loggers propagate to ours (app.logs): one format for all
    )


@app.command("settings")
def show_settings() -> None:
    """List every FIELDLAB_* setting with its default and meaning."""
    if not out.is_terminal:  # piped: whole lines for grep, not a table cut to 80 columns
        for name, default, doc in documented_settings():
            print(f"{name}\t{default}\t{doc}")
        return
    table = Table("variable", "default", "meaning")
    for name, default, doc in documented_settings():
        table.add_row(name, default, doc)
    out.print(table)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations to FIELDLAB_DATABASE_URL (creates the schema on a new database)."""
    settings = _settings()
    try:
        upgrade_database(settings.database_url, revision)
    except Exception as exc:
        raise _fail(f"migration failed on {settings.database_url.split('@')[-1]}: {exc}") from None
    err.print(f"database at revision {revision}")


@config_app.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="The YAML file `serve --config` would load.")],
    flows_dir: Annotated[
        str | None, typer.Option(help="Where flow_file entries are looked for [env FIELDLAB_FLOWS_DIR].")
    ] = None,
) -> None:
    """Check a config file without starting anything (for the repository's CI): its shape, every
    site's and check's fields, schedules, steps and flow files. Exit 0 valid, 2 with the reason."""
    from app.configfile import ConfigError, validate

    settings = _settings()
    try:
        doc = validate(file, flows_dir=Path(flows_dir or settings.flows_dir))
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    err.print(
        f"{file}: valid ({len(doc['sites'])} site(s), {len(doc['checks'])} check(s))",
        highlight=False,
        soft_wrap=True,
    )


@sites_app.command("add")
def sites_add(
    name: Annotated[str, typer.Argument(help="A name for the site, e.g. shop.")],
    origin: Annotated[
        list[str],
        typer.Option("--origin", "-o", help="Allowed page origin, e.g. https://shop.example. Repeatable."),
    ],
    page_group: Annotated[
        list[str] | None,
        typer.Option(
            "--page-group", "-g", help="Route rule PATTERN or PATTERN=GROUP, e.g. '/product/*'. Repeatable."
        ),
    ] = None,
    allow_query: Annotated[
        list[str] | None,
        typer.Option("--allow-query", help="Query parameter kept in stored URLs. Repeatable."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a site and print its public key (for the snippet's data-site)."""
    from app import sites as site_data

    rules = _rules(page_group)
    settings = _settings()
    try:
        site = _with_db(
            settings,
            lambda db: site_data.create_site(
                db=db, name=name, origins=origin, page_groups=rules, query_allowlist=allow_query or []
            ),
        )
    except (site_data.InvalidInput, site_data.Conflict) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        out.print_json(json.dumps(_site_json(site)))
        return
    out.print(f"site [bold]{site.name}[/bold] id={site.id} key=[bold]{site.key}[/bold]")
    out.print(
        f'snippet: <script async src="https://YOUR-FIELDLAB/fieldlab.js" data-site="{site.key}"></script>'
    )


def _rules(page_group: list[str] | None) -> list[dict[str, str]]:
    from app.sites import parse_rule

    return [parse_rule(rule) for rule in page_group or []]


@sites_app.command("update")
def sites_update(
    site: Annotated[str, typer.Argument(help="The site's id or name.")],
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    origin: Annotated[
        list[str] | None, typer.Option("--origin", "-o", help="Replace the allowed origins. Repeatable.")
    ] = None,
    add_origin: Annotated[list[str] | None, typer.Option(help="Allow one more origin. Repeatable.")] = None,
    remove_origin: Annotated[
        list[str] | None, typer.Option(help="Stop allowing an origin. Repeatable.")
    ] = None,
    page_group: Annotated[
        list[str] | None,
        typer.Option(
            "--page-group", "-g", help="Replace the route rules: PATTERN or PATTERN=GROUP. Repeatable."
        ),
    ] = None,
    no_page_groups: Annotated[
        bool, typer.Option(help="Drop every route rule (the default grouping).")
    ] = False,
    allow_query: Annotated[
        list[str] | None, typer.Option(help="Replace the query parameters kept in URLs. Repeatable.")
    ] = None,
    no_allow_query: Annotated[bool, typer.Option(help="Keep no query parameters.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Change a site's name, origins, route rules or query allowlist; the key stays. Running
    servers use the change within FIELDLAB_SITE_CACHE_TTL_S; rules apply to new beacons."""
    from app import sites as site_data

    if page_group and no_page_groups:
        raise _fail("give --page-group or --no-page-groups, not both")
    if allow_query and no_allow_query:
        raise _fail("give --allow-query or --no-allow-query, not both")
    settings = _settings()

    async def update(db: Database) -> Any:
        found = await _find_site(db, site)
        origins = list(origin) if origin else None
        if add_origin or remove_origin:
            current = origins or list(found.origins)
            gone = {site_data.normalise_origin(o) for o in remove_origin or []}
            missing = gone - set(current)
            if missing:
                raise site_data.InvalidInput(
                    f"--remove-origin: {', '.join(sorted(missing))} is not allowed now"
                )
            origins = [o for o in current if o not in gone] + list(add_origin or [])
        return await site_data.update_site(
            db=db, site_id=found.id, name=name, origins=origins,
            page_groups=[] if no_page_groups else _rules(page_group) if page_group else None,
            query_allowlist=[] if no_allow_query else allow_query or None,
        )  # fmt: skip

    try:
        changed = _with_db(settings, update)
    except (site_data.InvalidInput, site_data.Conflict) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        out.print_json(json.dumps(_site_json(changed)))
        return
    out.print(f"site [bold]{escape(changed.name)}[/bold] id={changed.id} updated", highlight=False)
    out.print(f"origins: {', '.join(changed.origins)}", highlight=False)
    groups = ", ".join(f"{r['pattern']}={r['group']}" for r in changed.page_groups) or "(default)"
    out.print(f"page groups: {escape(groups)}", highlight=False)
    out.print(f"query allowlist: {', '.join(changed.query_allowlist) or '(none)'}", highlight=False)


async def _find_site(db: Database, site: str) -> Any:
    """A site by id or name; InvalidInput naming it if there is none."""
    from app import sites as site_data

    found = await (
        site_data.get_site(db=db, site_id=int(site))
        if site.isdigit()
        else site_data.get_site_by_name(db=db, name=site)
    )
    if found is None or found.id is None:
        raise site_data.InvalidInput(f"no site {site!r} (give an id or a name from `fieldlab sites list`)")
    return found


@sites_app.command("delete")
def sites_delete(
    site: Annotated[str, typer.Argument(help="The site's id or name.")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask; needed when not on a terminal.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was deleted as JSON.")] = False,
) -> None:
    """Delete a site and everything that is its: field data, errors, rollups, deploy markers,
    its checks and runs, budget history, alert states, scoped webhooks and site-limited tokens.
    There is no undo."""
    from app import sites as site_data
    from app.site_delete import delete_site, site_contents

    settings = _settings()
    try:
        found = _with_db(settings, lambda db: _find_site(db, site))
    except site_data.InvalidInput as exc:
        raise _fail(str(exc)) from None
    if not yes:
        if not sys.stdin.isatty():
            raise _fail(f"not deleting site {found.name!r} without --yes (no terminal to ask on)")
        counts = _with_db(settings, lambda db: site_contents(db=db, site_id=found.id))
        held = ", ".join(f"{n:,} {name}" for name, n in counts.items() if n) or "no data"
        err.print(f"site {escape(found.name)} (id {found.id}) holds {held}.", highlight=False)
        typer.confirm("Delete it all, for good?", abort=True, err=True)
    with err.status(f"deleting site {escape(found.name)} ..."):
        gone = _with_db(settings, lambda db: delete_site(db=db, site_id=found.id))
    if gone is None:
        raise _fail(f"site {site!r} was deleted meanwhile")
    err.print(
        "running servers refuse its beacons within FIELDLAB_SITE_CACHE_TTL_S",
        highlight=False,
    )
    if as_json:
        out.print_json(json.dumps(gone))
        return
    rows = ", ".join(f"{n:,} {name}" for name, n in gone["deleted"].items() if n) or "no other rows"
    out.print(f"site {escape(gone['name'])} (id {gone['id']}) deleted with {rows}", highlight=False)


def _site_json(site: Any) -> dict[str, Any]:
    return {
        "id": site.id, "name": site.name, "key": site.key, "origins": site.origins,
        "page_groups": site.page_groups, "query_allowlist": site.query_allowlist,
    }  # fmt: skip


@sites_app.command("list")
def sites_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List sites with their keys and origins."""
    from app import sites as site_data

    rows = _with_db(_settings(), lambda db: site_data.list_sites(db=db))
    if as_json:
        out.print_json(json.dumps([_site_json(s) for s in rows]))
        return
    table = Table("id", "name", "key", "origins", "page groups")
    for s in rows:
        groups = ", ".join(r["pattern"] for r in s.page_groups) or "(default)"
        table.add_row(str(s.id), s.name, s.key, ", ".join(s.origins), groups)
    out.print(table)


@tokens_app.command("create")
def tokens_create(
    scope: Annotated[
        str,
        typer.Option(
            help="read (dashboards, queries), deploy (read + add deploy markers: for CI) or admin (everything)."
        ),
    ],
    name: Annotated[str, typer.Option(help="A label to recognise the token by.")] = "",
    site: Annotated[int | None, typer.Option(help="Limit a read or deploy token to this site id.")] = None,
) -> None:
    """Create an API token. It is printed once; fieldlab keeps only its hash."""
    from app import sites as site_data

    settings = _settings()
    try:
        row, token = _with_db(
            settings, lambda db: site_data.create_token(db=db, scope=scope, name=name, site_id=site)
        )
    except site_data.InvalidInput as exc:
        raise _fail(str(exc)) from None
    err.print(f"token id={row.id} scope={row.scope} (shown once, store it now):")
    print(token)  # plain stdout so `TOKEN=$(fieldlab tokens create ...)` works


@tokens_app.command("list")
def tokens_list() -> None:
    """List tokens (id, name, scope, prefix); the tokens themselves are not stored."""
    from app import sites as site_data

    rows = _with_db(_settings(), lambda db: site_data.list_tokens(db=db))
    table = Table("id", "name", "scope", "site", "prefix")
    for t in rows:
        table.add_row(str(t.id), t.name, t.scope, str(t.site_id or "all"), t.prefix + "…")
    out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[int, typer.Argument(help="Token id from `tokens list`.")]) -> None:
    """Delete a token; requests using it are refused from then on."""
    from app import sites as site_data

    if not _with_db(_settings(), lambda db: site_data.revoke_token(db=db, token_id=token_id)):
        raise _fail(f"no token with id {token_id}")
    err.print(f"token {token_id} revoked")


@check_app.command("run")
def check_run(
    flow_file: Annotated[
        Path, typer.Argument(help="A Python file defining `async def flow(page, step)`, or .yml/.json steps.")
    ],
    url: Annotated[str, typer.Option("--url", help="Base URL the flow's relative paths go to.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
    device: Annotated[Literal["mobile", "desktop"], typer.Option(help="Device preset.")] = "desktop",
    throttling: Annotated[
        Literal["none", "mobile-slow-4g", "desktop-dense-4g"], typer.Option(help="Network and CPU profile.")
    ] = "none",
    allow_private: Annotated[
        bool,
        typer.Option("--allow-private", help="Allow loopback/private targets (e.g. a local dev server)."),
    ] = False,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="Allow this private HOST:PORT (or HOST) only, e.g. 127.0.0.1:3000. Repeatable.",
        ),
    ] = None,
    retries: Annotated[
        int, typer.Option(min=0, max=5, help="Retries of a failed run (passing on one: flaky).")
    ] = 1,
    artifacts: Annotated[
        Path | None, typer.Option(help="Where screenshots and traces go (default: a temp dir).")
    ] = None,
) -> None:
    """Run a flow once against --url and print its steps, lab vitals, resources and artifacts.
    Exit 0 passed (or flaky, with a warning), 1 failed, 2 usage or infrastructure error."""
    from app.checkcli import run_flow_once

    settings = _settings()
    code = run_flow_once(
        flow_file=flow_file, url=url, as_json=as_json, device=device, throttling=throttling,
        allow_private=allow_private or settings.allow_private_targets,
        allow_hosts=(*settings.target_hosts(), *(h.strip().lower() for h in allow_host or [])),
        retries=retries, artifacts=artifacts, settings=settings, console=out, errors=err,
    )  # fmt: skip
    raise typer.Exit(code)


_SERVER = typer.Option(help="A fieldlab server URL: use its API instead of FIELDLAB_DATABASE_URL.")
_TOKEN = typer.Option(help="API token for --server (admin, or limited to the site).")
_SITE = typer.Option(help="Site id or name (may be left out when there is one site).")


@marker_app.command("add")
def marker_add(
    commit: Annotated[str, typer.Option(help="The deployed commit SHA.")],
    branch: Annotated[str, typer.Option(help="The deployed branch.")],
    site: Annotated[str | None, _SITE] = None,
    message: Annotated[str, typer.Option(help="A note shown with the marker.")] = "",
    time: Annotated[str | None, typer.Option(help="When it was deployed (ISO 8601); default now.")] = None,
    server: Annotated[str | None, _SERVER] = None,
    token: Annotated[str, _TOKEN] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Record a deploy of a site (e.g. from CI after it ships)."""
    from app.budgets import markercli

    settings = Settings() if server else _settings()
    try:
        row = markercli.add(commit=commit, branch=branch, site=site, message=message, time=time, server=server,
                            token=token, settings=settings)  # fmt: skip
    except markercli.MarkerError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        out.print_json(json.dumps(row))
    else:
        err.print(f"marker {row['id']}: {row['commit'][:12]} on {row['branch']} at {row['time']}")


@marker_app.command("list")
def marker_list(
    site: Annotated[str | None, _SITE] = None,
    limit: Annotated[int, typer.Option(help="Most markers shown, newest first.")] = 20,
    server: Annotated[str | None, _SERVER] = None,
    token: Annotated[str, _TOKEN] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List a site's deploy markers, newest first."""
    from app.budgets import markercli

    settings = Settings() if server else _settings()
    try:
        rows = markercli.list_(site=site, limit=limit, server=server, token=token, settings=settings)
    except markercli.MarkerError as exc:
        raise _fail(str(exc)) from None
    markercli.show(rows, as_json=as_json, console=out)


@marker_app.command("delete")
def marker_delete(
    marker_id: Annotated[int, typer.Argument(help="The marker's id (`fieldlab marker list`).")],
    site: Annotated[str | None, _SITE] = None,
    server: Annotated[str | None, _SERVER] = None,
    token: Annotated[str, _TOKEN] = "",
) -> None:
    """Delete a marker recorded by mistake; comparisons with `latest` then start at the one
    before it. Running servers see it within their query cache's TTL."""
    from app.budgets import markercli

    settings = Settings() if server else _settings()
    try:
        site_id = markercli.delete(
            marker_id=marker_id, site=site, server=server, token=token, settings=settings
        )
    except markercli.MarkerError as exc:
        raise _fail(str(exc)) from None
    err.print(f"marker {marker_id} of site {site_id} deleted")


@app.command()
def gate(
    budgets: Annotated[
        Path,
        typer.Option(help="fieldlab budget YAML, an LHCI config (lighthouserc.json/.yml) or a budget.json."),
    ],
    lhr: Annotated[
        Path | None,
        typer.Option(help="Judge existing Lighthouse reports (a folder of lhr-*.json or one file)."),
    ] = None,
    url: Annotated[str | None, typer.Option(help="Run Lighthouse (and --flow) against this URL.")] = None,
    runs: Annotated[int, typer.Option(help="Lighthouse audits / flow runs per URL (aggregated).")] = 3,
    flow: Annotated[
        list[Path] | None, typer.Option("--flow", help="A flow file to run against --url. Repeatable.")
    ] = None,
    preset: Annotated[str, typer.Option(help="Lighthouse preset: mobile or desktop.")] = "mobile",
    junit: Annotated[Path | None, typer.Option(help="Write JUnit XML here.")] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Write Markdown here (appends to $GITHUB_STEP_SUMMARY).")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the verdicts as JSON here.")] = None,
    baseline_lhr: Annotated[
        Path | None, typer.Option(help="Reports of a baseline build: adds a delta column.")
    ] = None,
    allow_private: Annotated[
        bool, typer.Option("--allow-private", help="Allow loopback/private targets (a local server).")
    ] = False,
    baseline: Annotated[
        str | None, typer.Option(help="fieldlab server URL: compare with builds uploaded for --branch.")
    ] = None,
    upload: Annotated[
        str | None, typer.Option(help="fieldlab server URL: store this build's verdicts (and a marker).")
    ] = None,
    branch: Annotated[str | None, typer.Option(help="Branch for --baseline/--upload.")] = None,
    commit: Annotated[str | None, typer.Option(help="Commit SHA for --upload's deploy marker.")] = None,
    token: Annotated[
        str,
        typer.Option(
            help="Token of the --baseline/--upload server: read is enough for --baseline, --upload needs deploy (of every site) or admin."
        ),
    ] = "",
    site: Annotated[int | None, typer.Option(help="Site id that --upload adds the deploy marker to.")] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option(help="Keep --url's Lighthouse reports and flow artifacts here (default: temp)."),
    ] = None,
) -> None:
    """Judge Lighthouse reports and flow runs against budgets, for CI.
    Exit 0 all pass (warnings allowed), 1 a budget fails, 2 usage or infrastructure error."""
    from app.budgets.gate import GateOptions, run_gate

    opts = GateOptions(
        budgets=budgets, lhr=lhr, url=url, runs=runs, flows=flow or [], preset=preset, junit=junit,
        markdown=markdown, json_out=json_out, baseline_lhr=baseline_lhr, allow_private=allow_private,
        baseline_server=baseline, upload_server=upload, branch=branch, commit=commit, token=token, site=site,
        output_dir=output_dir,
    )  # fmt: skip
    raise typer.Exit(run_gate(opts, _settings(), out, err))


@demo_app.command("seed")
def demo_seed(
    checks: Annotated[
        bool, typer.Option("--checks/--no-checks", help="Also schedule the demo flow and Lighthouse audit.")
    ] = True,
    history: Annotated[
        bool,
        typer.Option(
            "--history/--no-history",
            help="Give a demo site without field data 14 days of generated page views and two deploys,"
            " and demo checks without runs 14 days of generated runs.",
        ),
    ] = True,
) -> None:
    """Create the `demo` site (once) with the origins `serve` will use, print its key, give it a
    generated field history (once), and schedule a demo flow and a Lighthouse audit of it
    (idempotent)."""
    from app import sites as site_data
    from app.demo import demo_base_url, seed_demo_checks, seed_demo_site
    from app.demo.history import DAYS, seed_history
    from app.demo.lab_history import seed_lab_history
    from app.runner import target_policy

    settings = _settings()
    base = demo_base_url(settings.host, settings.port)

    async def seed(db: Database) -> tuple[int, str, list[str]]:
        site_id, key = await seed_demo_site(db=db, host=settings.host, port=settings.port)
        if history:
            site = await site_data.get_site(db=db, site_id=site_id)
            assert site is not None
            with err.status("generating the demo's field history ..."):
                seeded = await seed_history(
                    db=db, site_id=site_id, base=base, page_groups=tuple(site.page_groups)
                )
            if seeded is not None:
                err.print(f"demo field history: {seeded.page_views:,} page views over {DAYS} days, "
                          f"{seeded.markers} deploy markers")  # fmt: skip
        names: list[str] = []
        if checks:
            try:
                made = await seed_demo_checks(
                    db=db, host=settings.host, port=settings.port, site_id=site_id,
                    flows_dir=Path(settings.flows_dir), policy=target_policy(settings),
                )  # fmt: skip
            except site_data.InvalidInput as exc:
                err.print(
                    f"[yellow]demo checks not scheduled:[/] {exc}; they visit this server on loopback, "
                    "so set FIELDLAB_ALLOW_PRIVATE_TARGETS=1 (`make run` does)",
                    highlight=False,
                )
            else:
                names = [f"{c.name} (every {c.interval_s} s)" for c in made]
                if history and (runs := await seed_lab_history(db=db, checks=made, base=base)):
                    err.print(f"demo lab history: {runs} runs of the demo checks over {DAYS} days")
        return site_id, key, names

    site_id, key, names = _with_db(settings, seed)
    err.print(f"demo site id={site_id} key={key}: http://{settings.host}:{settings.port}/demo/")
    for name in names:
        err.print(f"demo check {name}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
