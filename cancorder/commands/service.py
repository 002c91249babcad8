"""``cancorder service``: install the systemd unit, udev rules and launchd plist it ships."""


SOURCES = {}  # it serves no bus: no source kind of a config file


def add_subparser(subparsers, common):
    parser = subparsers.add_parser(
        "service", parents=[common], help="install cancorder as a systemd or launchd service",
        description="Put the shipped service files in place: on Linux the systemd template "
                    "unit cancorder@.service, udev rules for candleLight/CANable/TouCAN and "
                    "/etc/cancorder/NAME.toml; on macOS a launchd plist. Then prints the "
                    "commands that start it.")
    actions = parser.add_subparsers(title="actions", metavar="ACTION")
    install = actions.add_parser("install", parents=[common],
                                 help="write the service files for instance NAME")
    install.add_argument("name", metavar="NAME",
                         help="instance name: the config is /etc/cancorder/NAME.toml and the "
                              "unit cancorder@NAME")
    install.add_argument("--config", metavar="FILE.toml", default=None,
                         help="copy this config (checked first) instead of the example, unless "
                              "the instance already has one")
    install.add_argument("--root", metavar="DIR", default="/",
                         help="write under this folder instead of / (packaging, tests)")
    install.add_argument("--platform", choices=("linux", "macos"), default=None,
                         help="which service manager (default: this machine's)")
    install.set_defaults(func=_do_install)
    show = actions.add_parser("show", parents=[common],
                              help="print one shipped file (unit, udev, plist, example)")
    show.add_argument("file", choices=("unit", "udev", "plist", "example"))
    show.set_defaults(func=_do_show)
    return parser


def _do_install(args):
    from .. import service

    from . import _config

    done = service.install(args.name, root=args.root, platform=args.platform,
                           config=args.config,
                           check_config=lambda path: _config.paths(
                               _config.check(path, args.sources)))
    for path in done.written:
        print(f"wrote {path}")
    for path in done.kept:
        print(f"kept {path} (it exists already)")
    print("then:")
    for step in done.next_steps:
        print(f"  {step}")
    return 0


def _do_show(args):
    from .. import service

    names = {"unit": service.UNIT, "udev": service.UDEV_RULES, "plist": service.PLIST,
             "example": service.EXAMPLE}
    text = service.unit_text() if args.file == "unit" else service.shipped(names[args.file])
    print(text, end="")
    return 0
