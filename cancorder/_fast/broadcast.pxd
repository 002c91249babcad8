import cython


cdef class Client:
    cdef public object sock
    cdef public str name
    cdef public object backlog
    cdef public Py_ssize_t backlog_bytes
    cdef public double behind_since
    cdef public unsigned long long sent
    cdef public bint closed


cdef class Broadcaster:
    cdef public Py_ssize_t client_buffer
    cdef public Py_ssize_t max_clients
    cdef public double coalesce
    cdef object _log
    cdef object _selector
    cdef list _listeners
    cdef object _wake_r
    cdef object _wake_w
    cdef object _pending
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
    cdef public unsigned long long bytes_sent
    cdef public Py_ssize_t clients_accepted
    cdef public Py_ssize_t clients_refused
    cdef public Py_ssize_t clients_dropped_lag
    cdef public object admit

    cpdef submit(self, records)
    cdef _on_wake(self)
    cdef _go_idle(self)
    cdef _flush(self)
    cdef _send_all(self, data, double now)
    @cython.locals(sent=Py_ssize_t)
    cdef _send(self, Client client, data)
    @cython.locals(sent=Py_ssize_t, backlog=object)
    cdef _write_backlog(self, Client client)
    cdef _accept(self, listener)
    cdef _read(self, Client client)
    cdef _drop_laggard(self, Client client)
    cdef _close(self, Client client, str why, str level=*)
    cdef _wake(self)
    cdef bint _stopping_done(self)
    cdef _close_listeners(self)
    cdef _close_all(self)
