import cython


cdef class FrameEncoder:
    cdef public unsigned long long frames
    cdef public unsigned long long fd_frames
    cdef public unsigned char bus
    cdef bytearray _out
    cdef unsigned char _ext, _fd

    @cython.locals(size=Py_ssize_t, need=Py_ssize_t, o=Py_ssize_t, pos=Py_ssize_t,
                   k=Py_ssize_t, n=Py_ssize_t, flags=cython.uchar, ext=cython.uchar,
                   fd=cython.uchar, bus=cython.uchar, p=cython.p_uchar, out=cython.p_uchar,
                   out_buf=bytearray)
    cpdef tuple encode(self, bytes records)


cdef class CommandReader:
    cdef public unsigned long long errors
    cdef public unsigned long long commands
    cdef bytearray _buf
    cdef int _state
    cdef int _command
    cdef Py_ssize_t _need

    @cython.locals(size=Py_ssize_t, i=Py_ssize_t, take=Py_ssize_t, c=cython.uchar,
                   state=cython.int, p=cython.p_uchar, items=list, buf=bytearray)
    cpdef list feed(self, bytes data)

    cdef _start(self, int command, list items)

    @cython.locals(n=Py_ssize_t, buf=bytearray)
    cdef _payload_done(self, list items)

    cdef _error(self, list items, str message)
