import cython
from cpython.bytes cimport PyBytes_FromStringAndSize

from cancorder._fast.wire cimport put_header, write_hex, write_hex_digits


cdef class FrameMaker:
    cdef unsigned long long _state
    cdef int _mode
    cdef int _kind
    cdef bint _sequential
    cdef unsigned long long _id_min, _id_max
    cdef long long _exact
    cdef bint _fd, _brs
    cdef unsigned char _test_id
    cdef public unsigned long long sent
    cdef bytes _lengths
    cdef Py_ssize_t _nlengths
    cdef bytearray _data
    cdef unsigned long long _id
    cdef unsigned char _flags

    @cython.locals(x=cython.ulonglong, mask=cython.ulonglong, multiplier=cython.ulonglong)
    cdef inline unsigned long long _next(self) noexcept

    @cython.locals(number=cython.ulonglong, can_id=cython.ulonglong, extended=bint,
                   low=cython.ulonglong, high=cython.ulonglong, n=Py_ssize_t,
                   flags=cython.uchar, p=cython.p_uchar, mode=cython.int, k=Py_ssize_t,
                   j=cython.int, bits=cython.ulonglong, byte=cython.uchar,
                   sequence=cython.uint)
    cdef Py_ssize_t _fill(self, long long millis) except -1

    @cython.locals(k=Py_ssize_t, length=Py_ssize_t)
    cpdef list frames(self, Py_ssize_t n, millis)

    @cython.locals(buf=bytearray, out=cython.p_uchar, src=cython.p_uchar, pos=Py_ssize_t,
                   k=Py_ssize_t, length=Py_ssize_t, j=Py_ssize_t)
    cpdef bytes records(self, Py_ssize_t n, stamps_us, millis)

    @cython.locals(buf=bytearray, out=cython.p_uchar, src=cython.p_uchar,
                   hexd=cython.p_uchar, o=Py_ssize_t, k=Py_ssize_t, length=Py_ssize_t,
                   flags=cython.uchar, kind=cython.uchar)
    cpdef bytes slcan_lines(self, Py_ssize_t n, millis)
