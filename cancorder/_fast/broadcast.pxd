import cython
from libc.errno cimport errno as c_errno


cdef extern from "<sys/socket.h>" nogil:
    ssize_t c_send "send" (int fd, const void *buf, size_t n, int flags)
    enum: MSG_DONTWAIT
    enum: MSG_NOSIGNAL


cdef inline Py_ssize_t send_bytes(int fd, bytes data) noexcept:
    """One non-blocking send of ``data`` on ``fd`` without a Python call, the GIL released
    around it: the bytes sent, or minus the errno."""
    cdef const char *p = data
    cdef size_t n = len(data)
    cdef ssize_t sent
    cdef int failure = 0
    with nogil:
        sent = c_send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL)
        if sent < 0:
            failure = c_errno
    return sent if sent >= 0 else -failure


cdef class Service:
    cdef public object protocol
    cdef public bint passthrough
    cdef public str label
    cdef public dict clients
    cdef public Py_ssize_t accepted
    cdef public Py_ssize_t refused
    cdef public Py_ssize_t dropped_lag
    cdef public unsigned long long bytes_sent
    cdef public unsigned long long units_sent


cdef class Listener:
    cdef public object sock
    cdef public Service service


cdef class Client:
    cdef public object sock
    cdef public str name
    cdef public str host
    cdef public Service service
    cdef public object session
    cdef public int stream
    cdef public object held
    cdef public double hold_until
    cdef public double handshake_by
    cdef public bint close_when_sent
    cdef public str close_reason
    cdef public object backlog
    cdef public object times
    cdef public Py_ssize_t backlog_bytes
    cdef public double behind_since
    cdef public object head_origin
    cdef public Py_ssize_t head_skip
    cdef public unsigned long long sent
    cdef public bint closed
    cdef public bint half_closed
    cdef public unsigned long long sent_at_eof
    cdef public bint finishing
    cdef public double finish_by
    cdef public int mask
    cdef public int fd


cdef class Broadcaster:
    cdef public Py_ssize_t client_buffer
    cdef public Py_ssize_t max_clients
    cdef public Py_ssize_t max_clients_per_host
    cdef public Py_ssize_t total_buffer
    cdef Py_ssize_t _backlog_total
    cdef dict _per_host
    cdef dict _finishing
    cdef dict _waiting
    cdef double _next_check
    cdef double _accept_resume
    cdef double _churn_window
    cdef Py_ssize_t _churn_count
    cdef public double coalesce
    cdef object _log
    cdef object _selector
    cdef list _services
    cdef list _listeners
    cdef object _wake_r
    cdef object _wake_w
    cdef object _pending
    cdef object _replies
    cdef public Py_ssize_t queued_bytes
    cdef Py_ssize_t _overflow
    cdef public unsigned long long bytes_overflowed
    cdef object _lock
    cdef bint _wake_armed
    cdef double _flush_due
    cdef double _last_flush
    cdef dict _clients
    cdef object _changed
    cdef int _watchers
    cdef bint _stop_requested
    cdef double _drain_deadline
    cdef bint _finished
    cdef public object admit
    cdef Service _main

    cpdef submit(self, records)
    cpdef send(self, Client client, data)
    cpdef start_stream(self, Client client, int stream, double hold=*)
    cpdef stop_stream(self, Client client)
    cpdef close_after_sending(self, Client client, str why)
    cdef Service _add_service(self, list listeners, protocol)
    cdef _on_wake(self)
    cdef _go_idle(self)
    cdef _flush(self)
    cdef _send_all(self, data, double now)
    cdef _send_encoded(self, Service service, data)
    @cython.locals(sent=Py_ssize_t, failure=Py_ssize_t)
    cdef _send(self, Client client, data)
    @cython.locals(size=Py_ssize_t)
    cdef _queue(self, Client client, data, double now=*)
    @cython.locals(sent=Py_ssize_t, backlog=object, skip=Py_ssize_t)
    cdef _write_backlog(self, Client client)
    cdef _watch(self, Client client, bint write)
    cdef _accept(self, Listener listener)
    cdef _refusal(self, address, host)
    cdef _pause_accepting(self, exc)
    cdef _schedule(self, double when)
    cdef _housekeeping(self)
    cdef _check_waiting(self, Client client, double now)
    @cython.locals(size=Py_ssize_t)
    cdef _release(self, Client client)
    cdef _reap(self)
    cdef bint _read(self, Client client)
    @cython.locals(phase=Py_ssize_t)
    cdef _drop_laggard(self, Client client, unqueued, str why)
    @cython.locals(size=Py_ssize_t)
    cdef _release_held_count(self, Client client)
    cdef _uncount(self, Client client)
    cdef _churn(self, str event)
    cdef _close(self, Client client, str why, str level=*, bint quiet=*)
    cdef _wake(self)
    cdef bint _stopping_done(self)
    cdef _close_listeners(self)
    cdef _close_all(self)


@cython.locals(count=Py_ssize_t, chunks=list)
cpdef object take_all(object pending)
