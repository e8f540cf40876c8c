#!/usr/bin/python3
"""The deployment files agree with the binaries.

usage: scripts/check-deployment.py <directory with the built binaries>

- docker-compose validates docker-compose.yml, alone and with the existing-Kafka override;
- every service that runs the taskpool image runs a binary the Dockerfile ships and the
  workspace builds, and that binary's own `check-config` accepts exactly the environment the
  compose file gives it (and refuses it with one unknown key added: the check can fail);
- health checks ask the port the service listens on, for a path the binary serves; the
  published port is the one tasklist-api listens on; the Dockerfile exposes its default port;
- what an operator trips over: every long-running service restarts, MongoDB is healthy only
  with a writable primary, tasklist-api with the development sign-in is published on loopback
  only, the image's user is numeric, the Docker context leaves out docs, scripts and CI, the
  event topics keep their events, and the existing-Kafka file needs a replication factor;
- the topic job creates every topic of schemas/src/topics.rs, with the relay's and
  tasklist-api's prefix, the partition count the relay documents, on the advertised broker;
- every server named in a database URL, MongoDB URI or bootstrap list is a compose service;
- the `monitoring` profile: `promtool` accepts the alert rules and the Prometheus configuration,
  every alert links its runbook entry in docs/operations.md, the dashboard is valid JSON whose
  panels query the provisioned data source, and the mounted files exist. (That every metric
  they name is exposed is checked by the binaries' tests against their `/metrics`.)
"""

import json
import os
import re
import tempfile
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def compose_run(files, extra_env=None, profile=None):
    args = ["docker-compose"]
    for f in files:
        args += ["-f", str(ROOT / f)]
    if profile:
        args += ["--profile", profile]
    env = dict(os.environ, **(extra_env or {}))
    return subprocess.run(args + ["config"], capture_output=True, text=True, env=env, cwd=ROOT)


def compose_config(*files, extra_env=None, profile=None):
    result = compose_run(files, extra_env, profile)
    check(result.returncode == 0, f"docker-compose config {' '.join(files)}: {result.stderr.strip()}")
    return yaml.safe_load(result.stdout) if result.returncode == 0 else None


def workspace_binaries():
    names = set()
    for manifest in ROOT.glob("*/Cargo.toml"):
        text = manifest.read_text()
        names.update(re.findall(r'\[\[bin\]\]\s*\nname = "([^"]+)"', text))
    return names


def dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    shipped = set(re.findall(r"/build/target/release/([\w-]+)", text))
    exposed = re.findall(r"^EXPOSE (\d+)", text, re.M)
    listen = re.search(r"TASKPOOL__HTTP__LISTEN=[\d.]+:(\d+)", text)
    return shipped, exposed, listen.group(1) if listen else None


# Where each binary's routes are declared.
ROUTE_SOURCES = {
    "tasklist-api": "tasklist/src/http/mod.rs",
    "kafka-relay": "kafka-relay/src/http.rs",
    "taskpool-demo": "demo/src/main.rs",
    "taskpool": "tasklist/src/http/mod.rs",
}


def serves(binary, path):
    source = (ROOT / ROUTE_SOURCES[binary]).read_text()
    return f'"{path}"' in source


def check_config(binaries, binary, environment):
    env = {"PATH": os.environ.get("PATH", "")}
    env.update({k: str(v) for k, v in environment.items()})
    run = lambda e: subprocess.run(
        [str(binaries / binary), "check-config"], env=e, capture_output=True, text=True
    )
    accepted = run(env)
    check(accepted.returncode == 0,
          f"{binary} check-config refuses the compose environment: {accepted.stderr.strip()}")
    prefix = next(iter(environment)).split("__")[0]
    refused = run(dict(env, **{f"{prefix}__HTTP__NOT_A_KEY": "1"}))
    check(refused.returncode == 2, f"{binary} check-config accepts an unknown key")


def port_mapping(published):
    """(host address or None, container port) of a published port, as `config` prints it."""
    if isinstance(published, dict):
        return published.get("host_ip"), str(published.get("target", ""))
    parts = str(published).split("/")[0].split(":")
    return (parts[0] if len(parts) == 3 else None), parts[-1]


def listen_port(environment):
    for key, value in environment.items():
        if key.endswith("__HTTP__LISTEN"):
            return str(value).rsplit(":", 1)[1]
    return None


def main():
    binaries = Path(sys.argv[1])
    config = compose_config("docker-compose.yml")
    existing = ("docker-compose.yml", "docker-compose.existing-kafka.yml")
    cluster = {"KAFKA_BOOTSTRAP": "b:9093", "KAFKA_USERNAME": "u", "KAFKA_PASSWORD": "p"}
    with_cluster = compose_config(*existing, extra_env=dict(cluster, KAFKA_REPLICATION_FACTOR="3"))
    if with_cluster:
        relay = with_cluster["services"]["kafka-relay"]["environment"]
        check(str(relay.get("TASKPOOL_RELAY__KAFKA__REPLICATION_FACTOR")) == "3",
              "the existing-Kafka file passes KAFKA_REPLICATION_FACTOR to the relay")
    env_without = {k: v for k, v in os.environ.items() if k != "KAFKA_REPLICATION_FACTOR"}
    os.environ.clear()
    os.environ.update(env_without)
    check(compose_run(existing, cluster).returncode != 0,
          "the existing-Kafka file starts without a replication factor")
    if config is None:
        return
    deployment_details(config["services"])
    services = config["services"]
    built = workspace_binaries()
    shipped, exposed, image_listen = dockerfile()
    check(shipped <= built, f"the Dockerfile ships {shipped - built}, which the workspace does not build")
    check(exposed == [image_listen], f"the Dockerfile exposes {exposed}, the image listens on {image_listen}")

    ours = {name: s for name, s in services.items() if s.get("image") == "taskpool:latest"}
    check({"demo", "kafka-relay", "tasklist-api"} <= set(ours), f"services on the taskpool image: {sorted(ours)}")
    for name, service in ours.items():
        binary = service["command"][0]
        check(binary in shipped, f"{name} runs {binary}, which the image does not ship")
        environment = service.get("environment", {})
        if binary in shipped:
            check_config(binaries, binary, environment)
        port = listen_port(environment)
        health = " ".join(service.get("healthcheck", {}).get("test", []))
        url = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", health)
        check(url is not None, f"{name} has no HTTP health check")
        if url:
            check(url.group(1) == port, f"{name}'s health check asks port {url.group(1)}, it listens on {port}")
            check(serves(binary, url.group(2)), f"{binary} does not serve {url.group(2)}")
        for published in service.get("ports", []):
            _, target = port_mapping(published)
            check(target == port, f"{name} publishes port {target}, it listens on {port}")

    relay_env = services["kafka-relay"]["environment"]
    tasklist_env = services["tasklist-api"]["environment"]
    prefix = relay_env.get("TASKPOOL_RELAY__KAFKA__TOPIC_PREFIX", "taskpool")
    check(tasklist_env.get("TASKPOOL_TASKLIST__KAFKA__TOPIC_PREFIX", "taskpool") == prefix,
          "the relay and tasklist-api use different topic prefixes")
    topics_command = " ".join(services["kafka-topics"]["command"])
    loops = re.findall(r"for topic in ([^;]+); do(.*?)done", topics_command)
    created = {topic for names, _ in loops for topic in names.split()}
    for names, body in loops:
        # The event topics keep every event (`tasklist-api rebuild` reads them from the start).
        events = {f"{prefix}.tasks", f"{prefix}.data-entries"} & set(names.split())
        check(bool(events) == ("retention.ms=-1" in body),
              f"the topic job's retention for {names}: events unlimited, the others the default")
    suffixes = set(re.findall(r'format!\("\{prefix\}\.([\w-]+)"', (ROOT / "schemas/src/topics.rs").read_text()))
    check(created == {f"{prefix}.{s}" for s in suffixes},
          f"the topic job creates {sorted(created)}, the binaries use {sorted(f'{prefix}.{s}' for s in suffixes)}")
    partitions = re.search(r"--partitions (\d+)", topics_command).group(1)
    documented = re.search(r"fn partitions\(\) -> i32 \{\s*(\d+)", (ROOT / "kafka-relay/src/config.rs").read_text())
    check(documented and documented.group(1) == partitions,
          f"the topic job creates {partitions} partitions, the relay documents {documented and documented.group(1)}")
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].split("//")[1]
    for env, key in ((relay_env, "TASKPOOL_RELAY__KAFKA__BOOTSTRAP_SERVERS"),
                     (tasklist_env, "TASKPOOL_TASKLIST__KAFKA__BOOTSTRAP_SERVERS")):
        check(env.get(key) == advertised, f"{key} is {env.get(key)}, the broker advertises {advertised}")
    check(services["kafka-relay"].get("deploy", {}).get("replicas") == 2, "two relay replicas (the lease)")

    # The broker users run is the one the tests run against.
    tested = re.search(r"^KAFKA_VERSION=(\S+)", (ROOT / "scripts/kafka-broker.sh").read_text(), re.M).group(1)
    for name in ("kafka", "kafka-topics"):
        image = services[name]["image"]
        check(image == f"apache/kafka:{tested}", f"{name} runs {image}, the tests run Apache Kafka {tested}")

    # Every server a service connects to is a service of the file.
    for name, service in ours.items():
        for key, value in service.get("environment", {}).items():
            if key.endswith(("__URL", "__URI", "__BOOTSTRAP_SERVERS")):
                for host in re.findall(r"(?:@|//|^|,)([a-z][\w-]*):\d+", str(value)):
                    check(host in services, f"{name}'s {key} names {host}, which is not a service")



def deployment_details(services):
    """What an operator trips over: restarts, health that means ready, ports, the image's user."""
    for name, service in services.items():
        one_shot = service.get("restart") == "no" or service.get("profiles")
        check(one_shot or service.get("restart") in ("unless-stopped", "always"),
              f"{name} has no restart policy")
    mongo_health = " ".join(services["mongodb"]["healthcheck"]["test"])
    check("isWritablePrimary" in mongo_health,
          "MongoDB's health check passes before the replica set has a primary")
    tasklist = services["tasklist-api"]
    if any("DEV_SIGN_IN" in key for key in tasklist.get("environment", {})):
        for published in tasklist.get("ports", []):
            host_ip, _ = port_mapping(published)
            check(host_ip == "127.0.0.1",
                  f"tasklist-api with the development sign-in is published on {host_ip or 'every interface'}")
    user = re.search(r"^USER (\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    check(user and user.group(1).isdigit(), "the image's USER is not numeric (Kubernetes' runAsNonRoot)")
    ignored = (ROOT / ".dockerignore").read_text().split()
    for folder in (".ci/", "docs/", "scripts/"):
        check(folder in ignored, f".dockerignore sends {folder} to the Docker daemon")


def monitoring(services):
    deploy = ROOT / "deploy"
    for name in ("prometheus", "grafana"):
        service = services.get(name)
        check(service is not None and service.get("profiles") == ["monitoring"],
              f"{name} is a service of the monitoring profile")
        for volume in (service or {}).get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                check((ROOT / source).exists(), f"{name} mounts {source}, which does not exist")
    rules = deploy / "prometheus/alerts.yml"
    checked = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
    check(checked.returncode == 0, f"promtool check rules: {checked.stdout}{checked.stderr}")
    # The configuration names the rules where the container mounts them; check it against
    # the file in the repository.
    config = (deploy / "prometheus/prometheus.yml").read_text().replace("/etc/prometheus/alerts.yml", str(rules))
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as copy:
        copy.write(config)
        copy.flush()
        checked = subprocess.run(["promtool", "check", "config", "--syntax-only", copy.name],
                                 capture_output=True, text=True)
        check(checked.returncode == 0, f"promtool check config: {checked.stdout}{checked.stderr}")
    runbook = (ROOT / "docs/operations.md").read_text().lower()
    for group in yaml.safe_load(rules.read_text())["groups"]:
        for rule in group["rules"]:
            anchor = rule["alert"].lower()
            check(f"#{anchor}" in rule["annotations"]["description"], f"{rule['alert']} links its runbook entry")
            check(f"### {anchor}" in runbook, f"docs/operations.md has no section for {rule['alert']}")
    dashboard = json.loads((deploy / "grafana/dashboards/taskpool.json").read_text())
    source = yaml.safe_load((deploy / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]["uid"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    check(len(panels) >= 10, f"the dashboard has {len(panels)} panels")
    for panel in panels:
        check(panel["datasource"]["uid"] == source and panel["targets"]
              and all(t["expr"].strip() for t in panel["targets"]),
              f"panel {panel['title']!r} queries the provisioned data source")


main()
with_monitoring = compose_config("docker-compose.yml", profile="monitoring")
if with_monitoring:
    monitoring(with_monitoring["services"])
if failures:
    print("deployment files and binaries disagree:", file=sys.stderr)
    for failure in failures:
        print(f"  - {failure}", file=sys.stderr)
    sys.exit(1)
print("deployment files and binaries agree")
