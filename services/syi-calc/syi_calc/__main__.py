"""`python -m syi_calc` (or `syi run syi-calc`): settings -> logging -> the dataflow."""

from __future__ import annotations

from syi_calc.flow import build
from syi_calc.settings import Settings
from syi_calc.telemetry import SERVICE
from syi_shared.logs import configure_logging
from syi_dataflow.run import run_service


def main() -> None:
    settings = Settings()
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    run_service(SERVICE, settings, build)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
