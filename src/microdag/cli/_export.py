"""``export argo``: a flow as an Argo Workflow manifest (:mod:`microdag._argo`
owns what the manifest holds and which names Kubernetes takes)."""

import sys

from .._cmdline import OK, UsageError, load, positive

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

#: The exporter's arguments, as the command line names them.
_OPTIONS = {"name": "--name", "namespace": "--namespace", "volume_claim": "--volume-claim", "image": "--image"}


def add_parser(sub: "Any", name: str, **options: "Any") -> None:
    """Command ``export`` on subparsers ``sub``."""
    p = sub.add_parser(name, **options)
    p.add_argument("target", choices=("argo",), metavar="TARGET", help="argo: an Argo Workflows Workflow")
    p.add_argument("flow", metavar="FLOW")
    p.add_argument(
        "--image", required=True, metavar="IMAGE",
        help="the container image every pod runs: it holds Python, microdag, the flow and its modules",
    )
    p.add_argument("--name", metavar="NAME", help="the workflow's name (default: generateName from the flow's name)")
    p.add_argument("--namespace", metavar="NS", help="the workflow's namespace")
    p.add_argument(
        "--volume-claim", metavar="CLAIM",
        help="a PersistentVolumeClaim every pod mounts at /microdag, where the run's outputs are kept "
        "(default: outputs travel as Argo parameters, 256 KiB of JSON each at most)",
    )
    p.add_argument("--workers", type=positive, metavar="N", help="pods running at once, at most (spec.parallelism)")
    p.add_argument(
        "--flow-path", metavar="SPEC",
        help="how the pods name the flow (default: FLOW as given, from the image's working directory)",
    )
    p.add_argument("--format", "-f", choices=("yaml", "json"), default="yaml", help="default: yaml")
    p.add_argument("-o", "--output", metavar="FILE", help="write the manifest to FILE (default: stdout)")
    p.set_defaults(handler=_cmd_export)


def _cmd_export(args: "argparse.Namespace") -> int:
    """``export argo FLOW --image IMAGE``: the flow as an Argo Workflow manifest."""
    from .._argo import manifest, name_problems  # (the handler's: export --help loads no exporter)

    problems = name_problems(
        name=args.name, namespace=args.namespace, volume_claim=args.volume_claim, image=args.image, labels=_OPTIONS
    )
    if problems:
        raise UsageError(problems[0])
    flow = load(args.flow)
    document = manifest(
        flow, image=args.image, flow_spec=args.flow_path or args.flow, name=args.name,
        namespace=args.namespace, volume_claim=args.volume_claim, workers=args.workers,
    )
    if args.format == "json":
        import json  # (the command line's start: json loads with the command that uses it)

        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    else:
        from .._yaml import dump  # (the handler's: export --help loads no exporter)

        text = dump(document, comment=f"Argo Workflow of flow {flow.name!r}, written by python -m microdag "
                    "export argo; submit it with: argo submit FILE")
    if args.output is None:
        sys.stdout.write(text)
        return OK
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror}") from None
    print(args.output)
    return OK
