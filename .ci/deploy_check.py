"""Checks deploy/ offline, as .ci/run's step "deploy/" runs it (the CI venv's python):

- every Kubernetes manifest kustomization.yaml lists, each document validated against the
  Kubernetes OpenAPI schemas that kubernetes-validate ships, in strict mode (unknown fields
  are errors), for every version in K8S_VERSIONS; a kind without a schema is an error too;
- what the schemas cannot see: selectors that match the pods, names that resolve, the
  config the ConfigMap carries (TOML; every key one config.example.toml documents), the
  container port and uid the image has, a termination grace that covers the shutdown grace;
- the ECS task definition against RegisterTaskDefinition's input shape in botocore's model
  (types, required and unknown fields), then Fargate's rules and the same cross-checks;
- the IAM policies: JSON, parliament's lint, and the actions against the AWS SDK calls in
  src/ (every call allowed; for IVS, nothing allowed that the code does not call).

Exits 1 with one line per problem, naming the file and the field.
"""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import botocore.session
import kubernetes_validate
import yaml
from botocore.validate import ParamValidator

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
# The oldest minor EKS still runs (1.32, in extended support until March 2027) and the newest
# the pinned kubernetes-validate ships (1.37): the manifests use only GA fields both accept.
K8S_VERSIONS = ("1.32.0", "1.37.0")
NAME = "ivs-playback-auth"

problems = []


def problem(where, message):
    problems.append(f"{where}: {message}")


class StrictLoader(yaml.SafeLoader):
    """A duplicate key is an error, not the last value silently."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(path):
    try:
        return [d for d in yaml.load_all(path.read_text(), Loader=StrictLoader) if d]
    except yaml.YAMLError as e:
        problem(path.relative_to(ROOT), f"not valid YAML: {e}")
        return []


def documented_keys():
    """section.key for every key config.example.toml shows, set or commented out."""
    keys, section = set(), None
    for line in (ROOT / "config.example.toml").read_text().splitlines():
        if m := re.match(r"^#?\s*\[\[?([a-z0-9_]+)\]\]?\s*$", line):
            section = m.group(1)
        elif section and (m := re.match(r"^#?\s*([a-z0-9_]+)\s*=", line)):
            keys.add(f"{section}.{m.group(1)}")
    return keys


DOCUMENTED = documented_keys()


def check_env_names(where, names):
    for name in names:
        if not name.startswith("IVS_AUTH__"):
            continue
        parts = name.removeprefix("IVS_AUTH__").lower().split("__")
        key = ".".join(parts)
        if len(parts) != 2 or key not in DOCUMENTED:
            problem(where, f"{name} names no key of config.example.toml (IVS_AUTH__SECTION__KEY)")


def check_config_keys(where, config, prefix=""):
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            check_config_keys(where, value, f"{path}.")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                check_config_keys(where, item, f"{path}.")
        elif path not in DOCUMENTED:
            problem(where, f"{path} is not a key of config.example.toml")


def image_facts():
    """The uid, listen port and stop behaviour the Dockerfile gives the image."""
    text = (ROOT / "Dockerfile").read_text()
    uid = re.search(r"^USER (\d+)", text, re.M).group(1)
    port = re.search(r"IVS_AUTH__SERVER__LISTEN=[\d.]+:(\d+)", text).group(1)
    return int(uid), int(port)


UID, PORT = image_facts()
ROUTES = set(re.findall(r'\.route\("(/[a-z]+)"', (ROOT / "src/service/http/mod.rs").read_text()))


def listen_port(where, listen):
    port = int(listen.rsplit(":", 1)[1])
    if port != PORT:
        problem(where, f"server.listen port {port} is not the image's {PORT} (Dockerfile)")
    return port


def check_kubernetes():
    kustomization = load_yaml(K8S / "kustomization.yaml")[0]
    listed = kustomization.get("resources", [])
    present = sorted(p.name for p in K8S.glob("*.y*ml") if p.name != "kustomization.yaml")
    for name in sorted(set(present) - set(listed)):
        problem(f"deploy/kubernetes/{name}", "not listed in kustomization.yaml's resources")
    docs = {}
    for name in listed:
        path = K8S / name
        if not path.is_file():
            problem("deploy/kubernetes/kustomization.yaml", f"resources: {name} does not exist")
            continue
        for doc in load_yaml(path):
            where = f"deploy/kubernetes/{name} ({doc.get('kind')})"
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    field = ".".join(str(p) for p in e.path)
                    problem(where, f"Kubernetes {version}: {field}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError as e:
                    problem(where, f"Kubernetes {version}: {e.message}")
            docs[doc["kind"]] = (where, doc)
    for kind in ("Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget"):
        if kind not in docs:
            problem("deploy/kubernetes/kustomization.yaml", f"no {kind} among the resources")
    if problems:
        return

    where, deployment = docs["Deployment"]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    if spec["selector"]["matchLabels"].items() - labels.items():
        problem(where, "spec.selector does not match the pod template's labels")
    for kind, field in (("Service", "selector"), ("PodDisruptionBudget", "selector")):
        other_where, other = docs[kind]
        selector = other["spec"][field]
        selector = selector.get("matchLabels", selector) if kind != "Service" else selector
        if selector.items() - labels.items():
            problem(other_where, f"spec.{field} does not select the Deployment's pods")
    for constraint in pod.get("topologySpreadConstraints", []):
        if constraint["labelSelector"]["matchLabels"].items() - labels.items():
            problem(where, f"topologySpreadConstraints ({constraint['topologyKey']}) select other pods")
    if pod.get("serviceAccountName") != docs["ServiceAccount"][1]["metadata"]["name"]:
        problem(where, "serviceAccountName is not the ServiceAccount of serviceaccount.yaml")
    annotations = docs["ServiceAccount"][1]["metadata"].get("annotations", {})
    if not re.fullmatch(r"arn:aws:iam::\d{12}:role/.+", annotations.get("eks.amazonaws.com/role-arn", "")):
        problem(docs["ServiceAccount"][0], "eks.amazonaws.com/role-arn is not an IAM role ARN")
    if pod["securityContext"].get("runAsUser") != UID:
        problem(where, f"securityContext.runAsUser is not the image's uid {UID} (Dockerfile USER)")

    configmap_where, configmap = docs["ConfigMap"]
    try:
        config = tomllib.loads(configmap["data"]["config.toml"])
    except (KeyError, tomllib.TOMLDecodeError) as e:
        problem(configmap_where, f"data.config.toml: not TOML: {e}")
        return
    check_config_keys(configmap_where, config)
    (container,) = pod["containers"]
    check_env_names(where, [e["name"] for e in container.get("env", [])])
    mounts = {v["name"]: v for v in pod.get("volumes", [])}
    config_path = container["args"][container["args"].index("--config") + 1]
    mount = next((m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"] + "/")), None)
    if mount is None or mounts[mount["name"]].get("configMap", {}).get("name") != configmap["metadata"]["name"]:
        problem(where, f"--config {config_path} is not in the ConfigMap's mount")
    port = listen_port(configmap_where, config["server"]["listen"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    if ports.get("http") != port:
        problem(where, f"containerPort http is not server.listen's port {port}")
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        got = container.get(probe, {}).get("httpGet", {}).get("path")
        if got != path or path not in ROUTES:
            problem(where, f"{probe} asks {got}, not {path} (a route of src/service/http/mod.rs)")
    grace = config["server"].get("shutdown_grace_seconds", 10)
    pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    # app.rs waits up to the grace for the token API, then up to it again for the admin API.
    need = pause + 2 * grace
    if pod.get("terminationGracePeriodSeconds", 30) <= need:
        problem(where, f"terminationGracePeriodSeconds must exceed preStop {pause} s + 2 x server.shutdown_grace_seconds = {need} s")
    security = container["securityContext"]
    if not (security.get("readOnlyRootFilesystem") and security.get("allowPrivilegeEscalation") is False):
        problem(where, "the container must have readOnlyRootFilesystem and no privilege escalation")
    if [i["name"] for i in kustomization.get("images", [])] != [container["image"].split(":")[0]]:
        problem("deploy/kubernetes/kustomization.yaml", f"images[].name must be the container's image {container['image']!r}")
    return config


FARGATE_MEMORY = {  # task cpu units -> memory MiB allowed (AWS Fargate task sizes)
    256: {512, 1024, 2048},
    512: set(range(1024, 4097, 1024)),
    1024: set(range(2048, 8193, 1024)),
    2048: set(range(4096, 16385, 1024)),
    4096: set(range(8192, 30721, 1024)),
}


def check_ecs(config):
    where = "deploy/ecs/task-definition.json"
    try:
        task = json.loads((DEPLOY / "ecs/task-definition.json").read_text())
    except json.JSONDecodeError as e:
        problem(where, f"not JSON: {e}")
        return
    shape = botocore.session.get_session().get_service_model("ecs").operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(task, shape)
    if report.has_errors():
        for line in report.generate_report().splitlines():
            problem(where, f"RegisterTaskDefinition: {line.strip()}")
        return
    for i, container in enumerate(task["containerDefinitions"]):
        # Optional in the model, refused by ECS without them.
        for field in ("name", "image"):
            if not container.get(field):
                problem(where, f"containerDefinitions[{i}].{field} is required")
    if "FARGATE" in task.get("requiresCompatibilities", []):
        if task.get("networkMode") != "awsvpc":
            problem(where, "networkMode must be awsvpc on Fargate")
        cpu, memory = int(task.get("cpu", 0)), int(task.get("memory", 0))
        if memory not in FARGATE_MEMORY.get(cpu, ()):
            problem(where, f"cpu {cpu} with memory {memory} is not a Fargate task size")
    if not task.get("taskRoleArn"):
        problem(where, "taskRoleArn: the role with deploy/iam-policy.json is missing")
    (container,) = task["containerDefinitions"]
    uses_execution_role = container.get("secrets") or container.get("logConfiguration", {}).get("logDriver") == "awslogs"
    if uses_execution_role and not task.get("executionRoleArn"):
        problem(where, "executionRoleArn is needed for awslogs and secrets")
    if container.get("user", "").split(":")[0] != str(UID):
        problem(where, f"user is not the image's uid {UID}")
    if not container.get("readonlyRootFilesystem"):
        problem(where, "readonlyRootFilesystem must be true")
    if container.get("logConfiguration") is None:
        problem(where, "logConfiguration is missing")
    command = container.get("healthCheck", {}).get("command", [])
    if command[:3] != ["CMD", "ivs-playback-auth", "healthcheck"]:
        problem(where, "healthCheck.command must be the image's `ivs-playback-auth healthcheck`")
    elif "--url" in command:
        url = command[command.index("--url") + 1]
        if not re.fullmatch(rf"http://127\.0\.0\.1:{PORT}/healthz", url):
            problem(where, f"healthCheck asks {url}: a container check restarts the task, so it asks /healthz on port {PORT}")
    if [p["containerPort"] for p in container.get("portMappings", [])] != [PORT]:
        problem(where, f"portMappings must publish the image's port {PORT}")
    env = {e["name"]: e["value"] for e in container.get("environment", [])}
    check_env_names(where, list(env) + [s["name"] for s in container.get("secrets", [])])
    grace = int(env.get("IVS_AUTH__SERVER__SHUTDOWN_GRACE_SECONDS", 10))
    if container.get("stopTimeout", 30) <= 2 * grace:
        problem(where, f"stopTimeout must exceed 2 x server.shutdown_grace_seconds = {2 * grace} s")
    if config:
        for key, value in (("KEYS__SECRET_PREFIX", config["keys"]["secret_prefix"]), ("COORDINATION__TABLE", config["coordination"]["table"])):
            if env.get(f"IVS_AUTH__{key}") != value:
                problem(where, f"IVS_AUTH__{key} differs from the ConfigMap's {value!r}")


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# Operations whose IAM action is not their own name (AWS's IAM docs for DynamoDB transactions).
IMPLIED = {"dynamodb:TransactWriteItems": set(), "dynamodb:TransactGetItems": {"dynamodb:GetItem"}}
TRANSACT_ITEMS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
# Called in local mode only, never against AWS: the demo channel (app.rs, ensure_private_channel).
LOCAL_ONLY = {"ivs:CreateChannel"}
# Allowed but not called by name: ImportPlaybackKeyPair's and CreateSecret's tags need TagResource.
EXTRA = {"ivs:TagResource": "ImportPlaybackKeyPair tags the key pair it creates"}


def sdk_calls(prefix, service):
    """The IAM actions of the SDK calls in the files that use aws_sdk_<service>."""
    model = botocore.session.get_session().get_service_model(service)
    ops = {snake(op): op for op in model.operation_names}
    actions = set()
    for path in (ROOT / "src").rglob("*.rs"):
        text = path.read_text()
        if f"aws_sdk_{prefix}" not in text:
            continue
        for method in re.findall(r"\.([a-z_]+)\(\)", text):
            if method in ops:
                action = f"{prefix}:{ops[method]}"
                actions |= IMPLIED.get(action, {action})
        if prefix == "dynamodb":
            for item in re.findall(r"\b(Put|Update|Delete|ConditionCheck|Get)::builder\(\)", text):
                actions.add(f"dynamodb:{TRANSACT_ITEMS[item]}")
    return actions


def policy_actions(where, policy):
    allowed = set()
    for statement in policy["Statement"]:
        if statement["Effect"] == "Allow":
            actions = statement["Action"]
            allowed |= set([actions] if isinstance(actions, str) else actions)
    return allowed


def check_iam(config):
    policies = {}
    for name in ("iam-policy.json", "iam-policy-setup.json"):
        where = f"deploy/{name}"
        text = (DEPLOY / name).read_text()
        try:
            policies[name] = json.loads(text)
        except json.JSONDecodeError as e:
            problem(where, f"not JSON: {e}")
            continue
        lint = subprocess.run([sys.executable, "-m", "parliament.cli"], input=text, capture_output=True, text=True)
        if lint.returncode != 0:
            for line in (lint.stdout + lint.stderr).strip().splitlines():
                problem(where, f"parliament: {line}")
    if len(policies) != 2:
        return
    replica = policy_actions("deploy/iam-policy.json", policies["iam-policy.json"])
    setup = policy_actions("deploy/iam-policy-setup.json", policies["iam-policy-setup.json"])
    for action in sorted(replica & {"dynamodb:CreateTable", "dynamodb:UpdateTimeToLive", "dynamodb:DeleteTable"}):
        problem("deploy/iam-policy.json", f"{action} is for the one-time create-table (iam-policy-setup.json), not replicas")
    for prefix, service in (("ivs", "ivs"), ("secretsmanager", "secretsmanager"), ("dynamodb", "dynamodb")):
        called = sdk_calls(prefix, service)
        for action in sorted(called - replica - setup - LOCAL_ONLY):
            problem("deploy/iam-policy.json", f"the code calls {action} (src/, aws_sdk_{prefix}) and no policy allows it")
        unused = {a for a in replica if a.startswith(prefix + ":")} - called - set(EXTRA)
        if prefix == "ivs":
            for action in sorted(unused):
                problem("deploy/iam-policy.json", f"{action} is allowed but src/ never calls it: remove it")
        elif called and unused:
            print(f"note: deploy/iam-policy.json allows {', '.join(sorted(unused))}, which src/ does not call by name")
    if config:
        resources = json.dumps(policies["iam-policy.json"])
        prefix, table = config["keys"]["secret_prefix"], config["coordination"]["table"]
        if f"secret:{prefix}*" not in resources:
            problem("deploy/iam-policy.json", f"no statement on the secrets named {prefix}* (keys.secret_prefix)")
        if f":table/{table}\"" not in resources:
            problem("deploy/iam-policy.json", f"no statement on the table {table} (coordination.table)")


config = check_kubernetes()
check_ecs(config)
check_iam(config)
if problems:
    print("\n".join(problems), file=sys.stderr)
    print(f"deploy/: {len(problems)} problem(s)", file=sys.stderr)
    sys.exit(1)
print(f"deploy/: manifests valid against Kubernetes {', '.join(K8S_VERSIONS)} (kubernetes-validate "
      f"{kubernetes_validate.__version__}, strict); ECS task definition and IAM policies checked")
