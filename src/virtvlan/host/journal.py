"""Logging to syslog(3), which journald also collects: hooks and the agent."""

import logging


class Syslog(logging.Handler):
    """Hands records to syslog(3), which journald also collects.

    The C `syslog` module instead of logging.handlers.SysLogHandler: that
    one imports socket, pickle and threading, milliseconds on every hook call.
    """

    PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4,
                  logging.ERROR: 3, logging.CRITICAL: 2}  # syslog.LOG_*

    def __init__(self) -> None:
        super().__init__()
        import syslog

        self._syslog = syslog
        syslog.openlog("virt-vlan", syslog.LOG_PID, syslog.LOG_DAEMON)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            priority = self.PRIORITIES.get(record.levelno, 6)
            for line in self.format(record).splitlines() or [""]:
                self._syslog.syslog(priority, line)
        except Exception:  # logging must never break the hook
            self.handleError(record)
