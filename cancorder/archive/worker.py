"""One archive worker: an MQTT 5 shared subscription in, lake files out, each message
acknowledged to the broker only once the file holding its frames is stored.

paho's network thread only queues what arrives (``Subscriber`` with ``manual_ack``); this
thread gathers it into files, writes them (blocking on the disk or the store, while paho keeps
the connection alive) and sends the acknowledgements. A crash before a file is stored leaves its
messages unacknowledged: the broker delivers them again to this session (a fixed client id per
``--group`` and ``--name``: the restarted worker resumes it), and they are written again under
the same keys (lake.py), so the lake holds each frame once. In a ``--group``, a worker that
dies and stays away has its session adopted by a live one (takeover.py).
"""
import logging
import queue
import time

from ..mqtt.subscriber import RECEIVE_MAXIMUM, Subscriber
from ..report import plural
from . import takeover
from .lake import GAPS_QUIET, LakeWriter

log = logging.getLogger("cancorder.archive")

TICK = 0.2  # s between looks at the files' ages when nothing arrives
MAX_PENDING = RECEIVE_MAXIMUM // 2  # unacknowledged messages before every file is closed: the
# broker stops sending at RECEIVE_MAXIMUM, and would wait for files that wait for it


def logger_of(label):
    """(system, channel) from the topic levels the wildcards matched (``truck42/can0``)."""
    system, _, channel = label.rpartition("/")
    return (system or channel, channel if system else "")


class LoggerStats:
    __slots__ = ("frames", "batches", "last_time_us")

    def __init__(self):
        self.frames = 0
        self.batches = 0
        self.last_time_us = None


class Archiver:
    def __init__(self, settings, store, max_size, max_age, group=None, name=None,
                 decoder=None, status_interval=10.0):
        self.settings = settings
        self.writer = LakeWriter(store, max_size, max_age, decoder)
        self.new_writer = lambda: LakeWriter(store, max_size, max_age, decoder)
        self.group = group
        self.name = name
        self.client_id = takeover.client_id_of(group, name)
        self.presence = None
        self.adoptions = {}  # peer name -> takeover.Adoption
        self.adopt_failed = {}  # peer name -> when adopting it last failed
        self.adopted = 0  # sessions adopted and let go, and their frames stored
        self.adopted_frames = 0
        self.status_interval = status_interval
        self.arrived = queue.Queue()
        self.loggers = {}  # (system, channel) -> LoggerStats
        self.subscriber = None

    def snapshot(self):
        """--metrics: each logger as the metrics' "bus" (its label): frames received, frames
        stored (sent on), seconds since its newest frame (the lag), the worker's files."""
        from ..metrics import BusSnapshot

        now_us = time.time() * 1e6
        writer = self.writer
        totals = {"files": writer.files, "bytes": writer.bytes, "pending": writer.pending(),
                  "adopted_sessions": self.adopted + len(self.adoptions),
                  "adopted_frames": self.adopted_frames}
        return [BusSnapshot(f"{system}/{channel}", True, frames_received=stats.frames,
                            frames_sent=writer.stored_frames.get((system, channel), 0),
                            seconds_since_frame=(now_us - stats.last_time_us) / 1e6
                            if stats.last_time_us is not None else float("nan"),
                            sinks={"archive": totals})
                for (system, channel), stats in list(self.loggers.items())]

    def run(self, stopping):
        """Until ``stopping`` is set; then new messages stop, every file is stored and
        acknowledged, and the broker is told to forget this worker's session."""
        subscriber = Subscriber(self.settings, self._arrived, on_problem=log.warning,
                                role="archive", share_group=self.group, manual_ack=True,
                                client_id=self.client_id)
        subscriber.connect()
        self.subscriber = subscriber
        group = f" in group {self.group}" if self.group else ""
        if self.group:
            try:
                self.presence = takeover.Presence(self.settings, self.group, self.name).start()
            except BaseException:
                subscriber.close(forget=False)
                raise
        log.info(f"archive: subscribed to {self.settings.where}/"
                 f"{subscriber.subscription(self.settings.topic)}{group}, writing to "
                 f"{self.writer.store.where}")
        next_status = time.monotonic() + self.status_interval
        finished = False
        try:
            while not stopping.is_set():
                self._take(TICK)
                self._acknowledge(self.writer.due())
                self._tend_adoptions()
                self._write_gaps()
                if time.monotonic() >= next_status:
                    log.info(self.status())
                    next_status += self.status_interval
            subscriber.unsubscribe()
            time.sleep(0.5)  # what the broker sent before the unsubscription took effect
            while self._take(0.05):
                pass
            self._acknowledge(self.writer.close_all())
            for adoption in list(self.adoptions.values()):
                self._release(adoption)
            self._write_gaps(quiet=0)  # the ended hours this worker wrote in
            time.sleep(0.2)  # paho sends the acknowledgements before the disconnection
            log.info(self.status(final=True))
            finished = True
        finally:
            # a failure (the store refused) leaves the session to the broker: what was not
            # acknowledged is delivered again to the worker started next under this name
            for adoption in self.adoptions.values():  # adopted sessions stay with the broker
                adoption.subscriber.close(forget=False)
            if self.presence is not None:  # a failure: a peer adopts what we left
                self.presence.close("" if finished else takeover.DOWN)
            subscriber.close(forget=finished)

    # ---- a dead peer's session (takeover.py) ----

    def _tend_adoptions(self):
        """Adopt the peers that died (when this worker is the one to), and let go of adopted
        sessions once they are drained, or at once when their owner took them back."""
        if self.presence is None:
            return
        now = time.monotonic()
        for peer in takeover.choose_adoptions(self.name, self.presence.states(),
                                              self.adoptions):
            if now - self.adopt_failed.get(peer, -takeover.RETRY) >= takeover.RETRY:
                self._adopt(peer)
        for adoption in list(self.adoptions.values()):
            writer = adoption.writer
            if not adoption.subscriber.connected:
                stored = writer.frames
                writer.open.clear()  # not stored, not acknowledged: the broker has them still
                self._absorb(writer)
                del self.adoptions[adoption.peer]
                adoption.subscriber.close(forget=False)
                self.adopted_frames += stored
                self.adopted += 1
                log.warning(f"archive: the session of worker {adoption.peer} was taken back "
                            f"(its worker is back, or the broker went): "
                            f"{plural(stored, 'frame')} of it stored here, the rest the broker "
                            "delivers again")
                continue
            self._acknowledge(writer.due())
            if now - adoption.last_arrival < takeover.QUIET:
                continue
            if writer.pending():  # the session is quiet: store what it gave, then wait again
                self._acknowledge(writer.close_all())
                adoption.last_arrival = now
                continue
            self._release(adoption)
            self.presence.mark(adoption.peer, f"{takeover.ADOPTED} by {self.name}")

    def _adopt(self, peer):
        def arrived(label, batch, records, acknowledge, redelivered):
            self.arrived.put((label, batch, acknowledge, redelivered, adoption))

        adoption = takeover.Adoption(peer, None, self.new_writer())
        try:
            adoption.subscriber = takeover.adopt(self.settings, self.group, peer, arrived)
        except Exception as exc:  # the broker went: tried again a little later
            log.warning(f"archive: could not adopt the session of worker {peer}: {exc}")
            self.adopt_failed[peer] = time.monotonic()
            return
        self.adoptions[peer] = adoption
        log.warning(f"archive: worker {peer} died (its will came); adopted its session: "
                    "taking what the broker kept for it, its share now comes here and to "
                    "the group's other live workers")

    def _release(self, adoption):
        """Everything the adopted session gave is stored and acknowledged: let it go."""
        self._acknowledge(adoption.writer.close_all())
        time.sleep(0.2)  # paho sends the acknowledgements before the disconnection
        adoption.subscriber.close(forget=False)
        del self.adoptions[adoption.peer]
        self._absorb(adoption.writer)
        self.adopted += 1
        self.adopted_frames += adoption.writer.frames
        log.info(f"archive: let go of worker {adoption.peer}'s adopted session: "
                 f"{plural(adoption.frames, 'frame')} in {plural(adoption.batches, 'batch')} "
                 f"taken over, {plural(adoption.writer.frames, 'frame')} stored")

    def _absorb(self, adopted):
        """An adopted session's writer, let go of: what it stored counts as stored here (the
        metrics' frames sent per logger), and its hours get their gaps written by ours."""
        self.writer.touched.update(adopted.touched)
        for logger, frames in adopted.stored_frames.items():
            self.writer.stored_frames[logger] = self.writer.stored_frames.get(logger, 0) + frames

    def _write_gaps(self, quiet=GAPS_QUIET):
        """The gaps table of the hour partitions that are complete (lake.LakeWriter)."""
        for (system, channel, date, hour), gaps in self.writer.write_gaps(quiet):
            if gaps:
                missing = sum(gap["missing"] for gap in gaps)
                log.info(f"archive: gaps in {system}/{channel} on {date} hour {hour}: "
                         f"{plural(len(gaps), 'gap')}, {plural(missing, 'frame')} missing")

    def _take(self, timeout):
        """Gather what arrived (waiting up to ``timeout`` for the first); False when nothing."""
        try:
            item = self.arrived.get(timeout=timeout)
        except queue.Empty:
            return False
        while item is not None:
            label, batch, acknowledge, redelivered, adoption = item
            writer = self.writer
            if adoption is not None:
                if self.adoptions.get(adoption.peer) is not adoption:  # let go of since:
                    # unacknowledged, the broker delivers it again to the session's holder
                    item = self._next()
                    continue
                writer = adoption.writer
                adoption.last_arrival = time.monotonic()
                adoption.batches += 1
                adoption.frames += batch.count
            system, channel = logger_of(label)
            stats = self.loggers.get((system, channel))
            if stats is None:
                stats = self.loggers[(system, channel)] = LoggerStats()
            stats.batches += 1
            stats.frames += batch.count
            if batch.records:
                stats.last_time_us = batch.records[-1][0]
            self._acknowledge(writer.add(system, channel, batch, acknowledge, redelivered))
            if writer.pending() >= MAX_PENDING:
                self._acknowledge(writer.close_all())
            item = self._next()
        return True

    def _next(self):
        try:
            return self.arrived.get_nowait()
        except queue.Empty:
            return None

    @staticmethod
    def _acknowledge(acks):
        for acknowledge in acks:
            acknowledge()

    def status(self, final=False):
        writer = self.writer
        now_us = time.time() * 1e6
        lags = ", ".join(
            f"{system}/{channel} {(now_us - stats.last_time_us) / 1e6:.1f} s"
            for (system, channel), stats in sorted(self.loggers.items())
            if stats.last_time_us is not None)
        head = "archive: done: " if final else "archive: "
        adopted = ""
        if self.adopted or self.adoptions:
            held = ", ".join(sorted(self.adoptions))
            adopted = (f"; adopted {plural(self.adopted + len(self.adoptions), 'session')} of "
                       f"dead workers ({plural(self.adopted_frames, 'frame')} stored"
                       + (f", holding {held}'s" if held else "") + ")")
        return (f"{head}{plural(writer.frames, 'frame')} in {plural(writer.files, 'file')} "
                f"({plural(writer.bytes, 'byte')}) from {plural(len(self.loggers), 'logger')}; "
                f"{plural(writer.pending(), 'batch')} waiting for their file" + adopted
                + (f"; lag: {lags}" if lags and not final else ""))

    # ---- paho's thread ----

    def _arrived(self, label, batch, records, acknowledge, redelivered):
        self.arrived.put((label, batch, acknowledge, redelivered, None))


def run_archive(settings, store, args, stopping, decoder=None):
    archiver = Archiver(settings, store, args.max_file_size, args.max_file_age, args.group,
                        args.name, decoder, args.status_interval)
    metrics = None
    if args.metrics:
        from ..metrics import MetricsServer

        metrics = MetricsServer(args.metrics, archiver.snapshot).start()
        log.info(f"archive: metrics on http://{args.metrics[0] or '0.0.0.0'}:{metrics.port}"
                 "/metrics")
    try:
        archiver.run(stopping)
    finally:
        if metrics is not None:
            metrics.close()
    return archiver
