import cython

from cancorder._fast.wire cimport hex_number, write_hex, write_hex_digits


cdef class FrameEncoder:
    cdef public unsigned long long frames
    cdef public unsigned long long fd_frames
    cdef bytearray _out
    cdef unsigned char _ext, _fd

    @cython.locals(size=Py_ssize_t, need=Py_ssize_t, o=Py_ssize_t, pos=Py_ssize_t,
                   start=Py_ssize_t, k=Py_ssize_t, end=Py_ssize_t, n=Py_ssize_t,
                   micros=cython.ulonglong, can_id=cython.uint,
                   flags=cython.uchar, ext=cython.uchar, fd=cython.uchar,
                   p=cython.p_uchar, out=cython.p_uchar,
                   hexd=cython.p_uchar, out_buf=bytearray, fd_spans=list, with_fd=bytes)
    cpdef tuple encode(self, bytes records)


@cython.locals(sec=cython.ulonglong, usec=cython.ulonglong, rest=cython.ulonglong,
               count=Py_ssize_t, k=Py_ssize_t)
cdef Py_ssize_t _decimal_stamp(unsigned char *out, Py_ssize_t o, unsigned long long micros)


cdef class CommandReader:
    cdef public Py_ssize_t max_length
    cdef public unsigned long long errors
    cdef public unsigned long long commands
    cdef bytearray _buf
    cdef bint _inside
    cdef Py_ssize_t _skipped
    cdef bint _skipping

    @cython.locals(size=Py_ssize_t, i=Py_ssize_t, j=Py_ssize_t, c=cython.uchar,
                   p=cython.p_uchar, limit=Py_ssize_t, items=list, buf=bytearray)
    cpdef list feed(self, bytes data)

    cdef _error(self, list items, str message)

    @cython.locals(tokens=list, count=Py_ssize_t)
    cdef tuple _command(self, bytes text)


@cython.locals(count=Py_ssize_t, digits=Py_ssize_t, can_id=cython.longlong, flags=cython.uchar,
               length_hex=cython.longlong, length_dec=cython.longlong, n=Py_ssize_t,
               k=Py_ssize_t, value=cython.longlong, data=bytearray, id_token=bytes,
               length_token=bytes, token=bytes)
cdef tuple _parse_send(list tokens, bint fd_command)


@cython.locals(size=Py_ssize_t)
cdef long long _hex_token(bytes token)


@cython.locals(size=Py_ssize_t, top=cython.longlong, high=cython.longlong, width=Py_ssize_t,
               value=cython.longlong)
cdef long long _negative_hex(bytes token, int bits)
