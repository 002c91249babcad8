import cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.string cimport memcpy

from cancorder._fast.wire cimport put_header, valid_length


cdef unsigned long long le32(const unsigned char *p, Py_ssize_t pos) noexcept

cdef unsigned long long le64(const unsigned char *p, Py_ssize_t pos) noexcept

@cython.locals(i=Py_ssize_t)
cdef void put_le64(unsigned char *p, Py_ssize_t pos, unsigned long long value) noexcept


cdef class FrameUnpacker:
    cdef public Py_ssize_t slots
    cdef public bytearray headers
    cdef public bytearray frames
    cdef public bytearray control
    cdef bytearray _out
    cdef public unsigned long long packed
    cdef public unsigned long long remote
    cdef public unsigned long long error
    cdef public unsigned long long invalid
    cdef public unsigned long long hardware
    cdef public unsigned long long software
    cdef public unsigned long long dropped
    cdef public list error_frames

    @cython.locals(h=cython.p_uchar, f=cython.p_uchar, c=cython.p_uchar, out=cython.p_uchar,
                   ext_flag=cython.uchar, fd_flag=cython.uchar, brs_flag=cython.uchar,
                   esi_flag=cython.uchar, o=Py_ssize_t, i=Py_ssize_t, hp=Py_ssize_t,
                   fp=Py_ssize_t, cp=Py_ssize_t, cend=Py_ssize_t, size=cython.ulonglong,
                   micros=cython.ulonglong, clen=cython.ulonglong, kind=cython.ulonglong,
                   seconds=cython.ulonglong, nanos=cython.ulonglong, raw_id=cython.ulonglong,
                   n=cython.uchar, can_id=cython.ulonglong, flags=cython.uchar,
                   start=Py_ssize_t)
    cpdef bytes unpack(self, Py_ssize_t count, unsigned long long now_us)
