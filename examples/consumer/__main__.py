"""Example consumer of the localdev stack's outputs (docs/outputs.md).

Reads every output through a StackReference, builds a Kubernetes provider from
the (secret) kubeconfig, and creates one namespace in the kind cluster.

    cd examples/consumer
    python -m venv .venv && .venv/bin/pip install -r requirements.txt
    pulumi stack init dev && pulumi up
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

config = pulumi.Config()
#: ORG/PROJECT/STACK of the localdev stack; "organization" is the org of every file/blob backend.
localdev_stack = config.get("localdevStack") or "organization/localdev/dev"
namespace_name = config.get("namespace") or "localdev-consumer"

localdev = pulumi.StackReference(localdev_stack)

cluster_name = localdev.require_output("clusterName")
kube_context = localdev.require_output("kubeContext")
# Secret in localdev's state, so the Output is secret already; Output.secret makes sure of it
# (it then stays encrypted in this stack's state too, and out of every log).
kubeconfig: pulumi.Output[str] = pulumi.Output.secret(localdev.require_output("kubeconfig")).apply(str)
push_registry = localdev.require_output("pushRegistry")  # "localhost:5001": push here, pods pull the same name
caches = localdev.get_output("caches")  # upstream host -> http://127.0.0.1:PORT of its pull-through cache
uis = localdev.get_output("uis")  # UI name -> URL on 127.0.0.1

provider = k8s.Provider(
    "localdev",
    kubeconfig=kubeconfig,
    context=kube_context,
)

namespace = k8s.core.v1.Namespace(
    "example",
    metadata=k8s.meta.v1.ObjectMetaArgs(
        name=namespace_name,
        labels={"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "localdev-consumer"},
        annotations={
            "localdev/cluster": cluster_name,
            "localdev/push-registry": push_registry,
        },
    ),
    opts=pulumi.ResourceOptions(provider=provider),
)

pulumi.export("namespace", namespace.metadata.name)
pulumi.export("cluster", cluster_name)
# Where to push this project's images, e.g. `docker push localhost:5001/localdev-consumer/app:dev`.
pulumi.export("imagePrefix", pulumi.Output.concat(push_registry, "/", namespace_name))
pulumi.export("dockerHubCache", caches.apply(lambda c: (c or {}).get("docker.io")))
pulumi.export("uis", uis)
