#!/usr/bin/env python3
"""Checks that the deployment files agree on the settings that matter.

The Dockerfile, .dockerignore, the compose files, the demo's tyk.conf, its API
definitions and the bundle manifests each name things the others rely on: the
plugin's service name and port, the bundle server, the bundle names, the auth
hook. hadolint and the Compose schema check each file alone; this checks them
together. Run by scripts/lint-deploy with the CI venv's Python (ruamel.yaml).
Prints one line per problem and exits 1 if there is any.
"""

import hashlib
import json
import re
import sys
import zipfile
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlsplit

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent

PLUGIN = "phantom-plugin"
BUNDLE_SERVER = "bundle-server"
GATEWAY = "tyk-gateway"
CHECK_API = "check-api"
DEMO_SERVICES = {GATEWAY, "tyk-redis", "echo", CHECK_API}
PLUGIN_PORT = 50051
BINARY = "/usr/local/bin/tyk-phantom-token"
SHUTDOWN_GRACE_DEFAULT_S = 10  # SHUTDOWN_GRACE_SECONDS
MIN_GRPC_MESSAGE = 64 * 1024 * 1024  # GRPC_MAX_MESSAGE_BYTES default
AUTH_HOOK = "PhantomAuthCheck"
INJECT_HOOK = "InjectJwtPostKeyAuth"
DEFAULT_EXTERNAL_NETWORK = "tyk-self-managed-trial_tyk"
# Bundle served to the gateway -> (its manifest, whether it has an id_extractor,
# its post_key_auth hooks).
BUNDLES = {
    "phantom-bundle-v1.zip": ("manifest/manifest.json", False, ()),
    "phantom-bundle-idx-v1.zip": ("manifest/manifest-id-extractor.json", True, ()),
    # The name in Curity's tutorial, with the hooks of Curity's manifest: API
    # definitions written for Curity's plugin load unchanged.
    "phantom-bundle.zip": ("manifest/manifest-curity.json", False, (INJECT_HOOK,)),
}
# Served for API definitions from elsewhere; the demo need not use them.
UNUSED_BY_DEMO_OK = {"phantom-bundle.zip"}
JWT_FROM_METADATA = "Bearer $tyk_meta.phantom_jwt"

problems = []


def fail(where, message):
    problems.append(f"{where}: {message}")


def load_json(rel):
    with open(ROOT / rel, encoding="utf-8") as f:
        return json.load(f)


def load_yaml(rel):
    with open(ROOT / rel, encoding="utf-8") as f:
        return YAML(typ="safe").load(f)


def seconds(duration):
    """Compose duration ("20s", "1m30s", "500ms") in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(duration))
    if not parts or "".join(n + u for n, u in parts) != str(duration):
        return None
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}
    return sum(float(n) * scale[u] for n, u in parts)


def as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# --- Dockerfile and .dockerignore ------------------------------------------------


def workspace_members():
    """The `members` of the root Cargo.toml's [workspace] table: cargo loads
    each one's manifest before it builds anything, the plugin alone included."""
    text = (ROOT / "Cargo.toml").read_text(encoding="utf-8")
    table = re.search(r"^\[workspace\][ \t]*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    listed = table and re.search(r"^members\s*=\s*\[(.*?)\]", table.group(1), re.M | re.S)
    if not listed:
        fail("Cargo.toml", "no [workspace] members list")
        return []
    return re.findall(r'"([^"]+)"', listed.group(1))


def check_dockerfile(members):
    where = "Dockerfile"
    lines = [
        line.strip()
        for line in (ROOT / where).read_text(encoding="utf-8").replace("\\\n", " ").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    words = [line.split(None, 1) + [""] for line in lines]
    instr = [(w[0].upper(), w[1]) for w in words]

    if ("EXPOSE", str(PLUGIN_PORT)) not in instr:
        fail(where, f"no EXPOSE {PLUGIN_PORT}")
    if ("STOPSIGNAL", "SIGTERM") not in instr:
        fail(where, "no STOPSIGNAL SIGTERM")
    health = [arg for op, arg in instr if op == "HEALTHCHECK"]
    if not any(f'["{BINARY}", "health"]' in arg for arg in health):
        fail(where, f'HEALTHCHECK is not CMD ["{BINARY}", "health"] (exec form)')
    if not any(op == "ENTRYPOINT" and f'["{BINARY}"]' == arg for op, arg in instr):
        fail(where, f'ENTRYPOINT is not ["{BINARY}"]')
    copied = [arg.split() for op, arg in instr if op == "COPY"]
    for member in members:
        if not any(f"{member}/Cargo.toml" in sources for sources in copied):
            fail(where, f"does not COPY {member}/Cargo.toml: the workspace cannot load without it")
    if not any(sources[:1] == ["manifest/"] for sources in copied):
        fail(where, "does not COPY manifest/: check-api compiles in the shipped bundles' manifests")
    builds = [arg for op, arg in instr if op == "RUN" and "cargo build" in arg]
    if not builds or not all("--locked" in arg and "--release" in arg for arg in builds):
        fail(where, "every cargo build must use --release --locked")
    for op, arg in instr:
        if op in ("COPY", "ADD") and re.search(r"(^|\s|/)\.env(\s|$)", arg):
            fail(where, f"{op} {arg}: never put .env in the image")
    users = [arg for op, arg in instr if op == "USER"]
    if users and users[-1].split(":")[0] in ("0", "root"):
        fail(where, "the image runs as root")


def dockerignore_excludes(patterns, path):
    """Whether `path` (or a folder above it) is left out of the build context."""
    parents = [path]
    while "/" in parents[-1]:
        parents.append(parents[-1].rsplit("/", 1)[0])
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        candidates = [pattern] + ([pattern[3:]] if pattern.startswith("**/") else [])
        if any(fnmatch(p, c) for p in parents for c in candidates):
            excluded = not negate
    return excluded


def check_dockerignore(members):
    where = ".dockerignore"
    patterns = [
        line.strip()
        for line in (ROOT / where).read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (".env", "src/.env", "target/release/x", ".git/config", "tests/it/main.rs",
                 "bundles/phantom-bundle-v1.zip", "bench/src/main.rs"):
        if not dockerignore_excludes(patterns, path):
            fail(where, f"{path} would be sent to the Docker build")
    for path in ("Cargo.toml", "Cargo.lock", "build.rs", "proto/coprocess_object.proto",
                 "src/main.rs", "src/lib.rs", "manifest/manifest.json",
                 *(f"{m}/Cargo.toml" for m in members)):
        if dockerignore_excludes(patterns, path):
            fail(where, f"{path} is needed by the build but left out")


# --- Compose ---------------------------------------------------------------------


def check_compose(base, external, conf):
    where = "docker-compose.yml"
    services = base.get("services") or {}
    networks = base.get("networks") or {}
    for name in (PLUGIN, BUNDLE_SERVER, *sorted(DEMO_SERVICES)):
        if name not in services:
            fail(where, f"no service {name}")

    for name, svc in services.items():
        at = f"{where}: {name}"
        image = svc.get("image", "")
        if "build" not in svc:
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if not tag or tag == "latest":
                fail(at, f"image {image!r} is not pinned to a version tag")
        for dep in svc.get("depends_on") or {}:
            if dep not in services:
                fail(at, f"depends on unknown service {dep}")
        for net in svc.get("networks") or []:
            if net not in networks:
                fail(at, f"uses undeclared network {net}")
        for port in svc.get("ports") or []:
            if not str(port).startswith("127.0.0.1:"):
                fail(at, f"port {port} is published beyond 127.0.0.1")
        profiles = as_list(svc.get("profiles"))
        if name in DEMO_SERVICES and profiles != ["demo"]:
            fail(at, "a demo service must be in the profile demo only")
        if name not in DEMO_SERVICES and profiles:
            fail(at, "must start without a profile")

    plugin = services.get(PLUGIN, {})
    at = f"{where}: {PLUGIN}"
    if "build" not in plugin:
        fail(at, "is not built from the Dockerfile")
    env_files = [e if isinstance(e, str) else e.get("path") for e in as_list(plugin.get("env_file"))]
    if ".env" not in env_files:
        fail(at, "env_file must include .env")
    if plugin.get("ports"):
        fail(at, "publishes a host port; the gateway reaches it on the network")
    if str(PLUGIN_PORT) not in [str(p) for p in plugin.get("expose") or []]:
        fail(at, f"does not expose {PLUGIN_PORT}")
    if plugin.get("restart") != "unless-stopped":
        fail(at, "restart must be unless-stopped")
    grace = seconds(plugin.get("stop_grace_period", "10s"))
    if grace is None or grace <= SHUTDOWN_GRACE_DEFAULT_S:
        fail(at, f"stop_grace_period must exceed the {SHUTDOWN_GRACE_DEFAULT_S} s drain")
    test = as_list((plugin.get("healthcheck") or {}).get("test"))
    if test[:1] != ["CMD"] or BINARY not in test or "health" not in test:
        fail(at, f"healthcheck must run {BINARY} health")

    bundles = services.get(BUNDLE_SERVER, {})
    at = f"{where}: {BUNDLE_SERVER}"
    if "./bundles:/usr/share/nginx/html:ro" not in (bundles.get("volumes") or []):
        fail(at, "must serve ./bundles read-only at /")
    probe = " ".join(as_list((bundles.get("healthcheck") or {}).get("test")))
    if not any(f"http://127.0.0.1/{name}" in probe for name in BUNDLES):
        fail(at, "healthcheck must fetch one of the bundles")

    gateway = services.get(GATEWAY, {})
    at = f"{where}: {GATEWAY}"
    mounts = gateway.get("volumes") or []
    if "./examples/demo/tyk.conf:/opt/tyk-gateway/tyk.conf:ro" not in mounts:
        fail(at, "does not mount examples/demo/tyk.conf")
    app_path = str(conf.get("app_path", "")).rstrip("/")
    if f"./examples/demo/apps:{app_path}:ro" not in mounts:
        fail(at, f"does not mount examples/demo/apps at app_path {app_path}")
    if conf.get("middleware_path") not in as_list(gateway.get("tmpfs")):
        fail(at, "middleware_path must be a writable tmpfs (the image runs as non-root)")
    published = f"127.0.0.1:8080:{conf.get('listen_port')}"
    if published not in [str(p) for p in gateway.get("ports") or []]:
        fail(at, f"must publish {published}")
    for dep in ("tyk-redis", PLUGIN, BUNDLE_SERVER):
        condition = ((gateway.get("depends_on") or {}).get(dep) or {}).get("condition")
        if condition != "service_healthy":
            fail(at, f"must wait for {dep} to be healthy")
    condition = ((gateway.get("depends_on") or {}).get(CHECK_API) or {}).get("condition")
    if condition != "service_completed_successfully":
        fail(at, f"must start only after {CHECK_API} found no error (service_completed_successfully)")

    checker = services.get(CHECK_API, {})
    at = f"{where}: {CHECK_API}"
    if checker.get("image") != plugin.get("image") or "build" not in checker:
        fail(at, f"must build and run the plugin's image ({plugin.get('image')})")
    command = as_list(checker.get("command"))
    if command[:1] != ["check-api"]:
        fail(at, "command must run check-api")
    checker_mounts = checker.get("volumes") or []
    apps_mount = next((m for m in checker_mounts if str(m).startswith("./examples/demo/apps:")), None)
    if not apps_mount or not str(apps_mount).endswith(":ro") or str(apps_mount).split(":")[1] not in command:
        fail(at, "must check ./examples/demo/apps, mounted read-only, the folder the gateway loads")
    bundles_mount = next((m for m in checker_mounts if str(m).startswith("./bundles:")), None)
    if not bundles_mount or str(bundles_mount).split(":")[1] not in command or "--bundle" not in command:
        fail(at, "must check the bundles served (./bundles, with --bundle)")
    checker_env = [e if isinstance(e, str) else e.get("path") for e in as_list(checker.get("env_file"))]
    if ".env" not in checker_env:
        fail(at, "env_file must include .env (the plugin's global defaults take part in the check)")
    if checker.get("restart") not in (None, "no"):
        fail(at, "runs once: restart must be \"no\"")

    where = "docker-compose.external.yml"
    if set(external) != {"networks"}:
        fail(where, "must only redefine the network")
    ext = (external.get("networks") or {}).get("tyk") or {}
    if ext.get("external") is not True:
        fail(where, "networks.tyk must be external")
    if set(ext) - {"name", "external"}:
        fail(where, f"networks.tyk: {sorted(set(ext) - {'name', 'external'})} conflict with external: true")
    if ext.get("name") != "${TYK_NETWORK:-" + DEFAULT_EXTERNAL_NETWORK + "}":
        fail(where, f"networks.tyk.name must be ${{TYK_NETWORK:-{DEFAULT_EXTERNAL_NETWORK}}}")
    if networks.get("tyk"):
        fail("docker-compose.yml", "networks.tyk must stay empty, or it conflicts with external: true")
    return set(services)


# --- Demo gateway ------------------------------------------------------------------


def check_tyk_conf(conf, services):
    where = "examples/demo/tyk.conf"
    cp = conf.get("coprocess_options") or {}
    if cp.get("enable_coprocess") is not True:
        fail(where, "coprocess_options.enable_coprocess must be true (else Tyk falls back to its own key check)")
    if cp.get("coprocess_grpc_server") != f"tcp://{PLUGIN}:{PLUGIN_PORT}":
        fail(where, f"coprocess_grpc_server must be tcp://{PLUGIN}:{PLUGIN_PORT}")
    for key in ("grpc_recv_max_size", "grpc_send_max_size"):
        if not isinstance(cp.get(key), int) or cp[key] < MIN_GRPC_MESSAGE:
            fail(where, f"coprocess_options.{key} must be at least {MIN_GRPC_MESSAGE}")
    if conf.get("enable_bundle_downloader") is not True:
        fail(where, "enable_bundle_downloader must be true")
    if conf.get("bundle_base_url") != f"http://{BUNDLE_SERVER}/":
        fail(where, f"bundle_base_url must be http://{BUNDLE_SERVER}/")
    storage = conf.get("storage") or {}
    if storage.get("type") != "redis" or storage.get("host") not in services:
        fail(where, "storage must be redis on a compose service")
    if conf.get("use_db_app_configs"):
        fail(where, "the demo loads API definitions from app_path")


def check_apis(services):
    used = {}
    seen_ids, seen_paths = set(), set()
    for path in sorted((ROOT / "examples/demo/apps").glob("*.json")):
        where = path.relative_to(ROOT).as_posix()
        api = json.loads(path.read_text(encoding="utf-8"))
        api_id = api.get("api_id")
        listen_path = (api.get("proxy") or {}).get("listen_path")
        if not api_id or api_id in seen_ids:
            fail(where, "api_id missing or used twice")
        if not listen_path or listen_path in seen_paths:
            fail(where, "proxy.listen_path missing or used twice")
        seen_ids.add(api_id)
        seen_paths.add(listen_path)
        if api.get("use_keyless") is not False:
            fail(where, "use_keyless must be false")
        if api.get("custom_plugin_auth_enabled") is not True:
            fail(where, "custom_plugin_auth_enabled must be true")
        if api.get("strip_auth_data") is not False:
            fail(where, "strip_auth_data must be false (it would remove the JWT)")
        if api.get("custom_middleware_bundle_disabled"):
            fail(where, "the bundle is disabled")
        bundle = api.get("custom_middleware_bundle")
        if bundle not in BUNDLES:
            fail(where, f"custom_middleware_bundle {bundle!r} is none of {sorted(BUNDLES)}")
            continue
        used.setdefault(bundle, []).append(where)
        host = urlsplit((api.get("proxy") or {}).get("target_url", "")).hostname
        if host not in services:
            fail(where, f"proxy.target_url host {host!r} is not a compose service")

        versions = list(((api.get("version_data") or {}).get("versions") or {}).values())
        injected = [
            value
            for version in versions
            if not version.get("global_headers_disabled")
            for name, value in (version.get("global_headers") or {}).items()
            if name.lower() == "authorization"
        ]
        config = api.get("config_data") or {}
        if BUNDLES[bundle][1]:
            if not versions or injected != [JWT_FROM_METADATA] * len(versions):
                fail(where, f'every version must inject the global header Authorization: {JWT_FROM_METADATA}')
            if config.get("jwt_in_metadata") is not True or api.get("config_data_disabled"):
                fail(where, "config_data.jwt_in_metadata must be true (and config_data enabled)")
        elif injected:
            fail(where, "injects Authorization without the id_extractor bundle: the plugin's JWT would be overwritten")
    for bundle in BUNDLES:
        if bundle not in used and bundle not in UNUSED_BY_DEMO_OK:
            fail("examples/demo/apps", f"no API definition uses {bundle}")
    return used


# --- Bundles -----------------------------------------------------------------------


def essentials(custom_middleware):
    """What the gateway takes from a manifest for our hook, for comparisons."""
    cm = custom_middleware or {}
    auth = cm.get("auth_check") or {}
    idx = cm.get("id_extractor") or {}
    active = not idx.get("disabled") and idx.get("extract_with") in ("value", "regex", "xpath")
    return {
        "driver": cm.get("driver"),
        "auth_check": (auth.get("name"), bool(auth.get("raw_body_only")), bool(auth.get("disabled"))),
        "post_key_auth": tuple(
            (hook.get("name"), bool(hook.get("raw_body_only")))
            for hook in cm.get("post_key_auth") or []
            if not hook.get("disabled")
        ),
        "id_extractor": (
            idx.get("extract_from"),
            idx.get("extract_with"),
            str((idx.get("extractor_config") or {}).get("header_name", "")).lower(),
        ) if active else None,
    }


def expected(with_id_extractor, post_key_auth):
    return {
        "driver": "grpc",
        "auth_check": (AUTH_HOOK, True, False),
        "post_key_auth": tuple((name, True) for name in post_key_auth),
        "id_extractor": ("header", "value", "authorization") if with_id_extractor else None,
    }


def check_bundles():
    if not (ROOT / "manifest").is_dir():
        print("note: no manifest/ folder yet; bundle manifests and zips not checked")
        return
    for name, (manifest_path, with_idx, post_key_auth) in BUNDLES.items():
        if not (ROOT / manifest_path).is_file():
            fail(manifest_path, f"missing (source of {name})")
            continue
        source = essentials(load_json(manifest_path).get("custom_middleware"))
        want = expected(with_idx, post_key_auth)
        if source != want:
            fail(manifest_path, f"custom_middleware is {source}, expected {want}")
        where = f"bundles/{name}"
        if not (ROOT / where).is_file():
            fail(where, "missing: the bundle server would answer 404 and the API would not load")
            continue
        with zipfile.ZipFile(ROOT / where) as z:
            manifest = json.loads(z.read("manifest.json"))
            files = manifest.get("file_list") or []
            if sorted(z.namelist()) != sorted(files + ["manifest.json"]):
                fail(where, f"holds {sorted(z.namelist())}, expected manifest.json and {files}")
                continue
            data = b"".join(z.read(f) for f in files)
        if manifest.get("checksum") != hashlib.md5(data).hexdigest():
            fail(where, "checksum is not the MD5 of the listed files")
        if essentials(manifest.get("custom_middleware")) != source:
            fail(where, f"was not built from {manifest_path} (rebuild it under a new name)")


def main():
    members = workspace_members()
    check_dockerfile(members)
    check_dockerignore(members)
    conf = load_json("examples/demo/tyk.conf")
    services = check_compose(load_yaml("docker-compose.yml"), load_yaml("docker-compose.external.yml"), conf)
    check_tyk_conf(conf, services)
    check_apis(services)
    check_bundles()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in the deployment files", file=sys.stderr)
        return 1
    print("deployment files agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
