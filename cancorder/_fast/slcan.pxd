import cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport errno
from posix.time cimport CLOCK_REALTIME, clock_gettime, nanosleep, timespec
from posix.unistd cimport read

from cancorder._fast.wire cimport RecordFilter, hex_number, write_header


cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    enum: POLLIN


cdef class SlcanParser:
    cdef public bint adapter_time
    cdef public unsigned long long frames
    cdef public unsigned long long remote
    cdef public unsigned long long bell
    cdef public unsigned long long garbage
    cdef public unsigned long long replies
    cdef bint _skipping
    cdef public bytes last_garbage
    cdef bytearray _pending
    cdef bytearray _out
    cdef long long _base_us
    cdef long long _last_ms
    cdef RecordFilter _filter
    cdef unsigned char _ext, _fd, _brs
    cdef long long _max_std, _max_ext

    @cython.locals(size=Py_ssize_t, i=Py_ssize_t, start=Py_ssize_t, o=Py_ssize_t,
                   c=cython.uchar, p=cython.p_uchar, out=cython.p_uchar, hexval=cython.p_uchar,
                   fdlen=cython.p_uchar, data=bytearray, pending=bytearray, out_buf=bytearray,
                   skipping=bint)
    cpdef bytes feed(self, chunk, long long now_us)

    @cython.locals(kind=cython.uchar, idlen=Py_ssize_t, flags=cython.uchar, remote=bint,
                   length=Py_ssize_t, can_id=cython.longlong, j=Py_ssize_t, v=cython.uchar,
                   dlc=cython.uchar, n=Py_ssize_t, rest=Py_ssize_t, k=Py_ssize_t,
                   hi=cython.uchar, lo=cython.uchar, micros=cython.longlong,
                   stamp=cython.longlong)
    cdef Py_ssize_t _line(self, unsigned char *p, Py_ssize_t s, Py_ssize_t e, unsigned char *out,
                          Py_ssize_t o, unsigned char *hexval, unsigned char *fdlen,
                          long long now_us)

    cdef long long _adapter_time(self, long long stamp_ms, long long now_us)
    cdef _garbage(self, unsigned char *p, Py_ssize_t s, Py_ssize_t e)


cdef class SlcanReader:
    cdef public int fd
    cdef public SlcanParser parser
    cdef public long long busy_ns
    cdef public long long gather_ns
    cdef public object check
    cdef public object changed
    cdef public object lost
    cdef public str description
    cdef public bint watching
    cdef public long long last_read_ns
    cdef unsigned long long _seen
    cdef bytearray _buffer

    @cython.locals(wait_ms=cython.int, buffer=cython.p_char, size=Py_ssize_t, fd=cython.int,
                   last=cython.longlong, busy=cython.longlong, gather=cython.longlong,
                   failure=cython.int, waiting=pollfd, ready=cython.int, clock=timespec,
                   pause=timespec, now_ns=cython.longlong, got=Py_ssize_t,
                   parser=SlcanParser, seen=cython.ulonglong)
    cpdef bytes read(self, double timeout)
