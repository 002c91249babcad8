import cython

from cancorder._fast.wire cimport valid_length, write_header
from cancorder._fast.logfile cimport _can_id, _record_end, _stamp

cdef Py_ssize_t _HEADER
cdef Py_ssize_t _EPB_HEAD
cdef Py_ssize_t _EPB_SIZE_MAX
cdef Py_ssize_t _CAN_MTU
cdef Py_ssize_t _CANFD_MTU


cdef void _put32(unsigned char *dst, Py_ssize_t o, unsigned int value) noexcept

cdef unsigned int _get32(const unsigned char *src, Py_ssize_t pos, bint big) noexcept


cdef class PcapngEncoder:
    cdef bytearray _buffer
    cdef public unsigned long long frames

    @cython.locals(size=Py_ssize_t, need=Py_ssize_t, src=cython.p_uchar, dst=cython.p_uchar,
                   pos=Py_ssize_t, o=Py_ssize_t, count=Py_ssize_t, end=Py_ssize_t,
                   micros=cython.ulonglong, can_id=cython.uint, flags=cython.uchar,
                   n=cython.uchar, mtu=Py_ssize_t, length=Py_ssize_t, p=Py_ssize_t,
                   fd_flags=cython.uchar, i=Py_ssize_t)
    cpdef bytes encode(self, records, unsigned int interface)


@cython.locals(size=Py_ssize_t, big=bint, src=cython.p_uchar, pos=Py_ssize_t,
               frames=Py_ssize_t, kind=cython.uint, length=cython.uint, ends=list)
cpdef list block_ends(bytes data)


cdef class PcapngParser:
    cdef object _want
    cdef bytes _tail
    cdef public unsigned long long offset
    cdef public unsigned long long frames
    cdef public unsigned long long remote
    cdef public unsigned long long error
    cdef public unsigned long long other
    cdef public unsigned long long other_channel
    cdef public bytes first_channel
    cdef public list runs
    cdef public object error_reason
    cdef public unsigned long long error_offset
    cdef bint _big
    cdef bint _started
    cdef list _interfaces
    cdef Py_ssize_t _run_interface
    cdef bytearray _out

    @cython.locals(data=bytes, size=Py_ssize_t, need=Py_ssize_t, src=cython.p_uchar,
                   o=Py_ssize_t, pos=Py_ssize_t, big=bint, kind=cython.uint,
                   length=cython.uint)
    cpdef bytes feed(self, chunk, bint final=*)

    @cython.locals(interface=cython.uint, captured=cython.uint, p=Py_ssize_t,
                   can_id=cython.uint, n=cython.uint, fd_flags=cython.uint,
                   extended=cython.uint, fd=cython.uint, flags=cython.uchar,
                   stamp=cython.ulonglong, high=cython.ulonglong)
    cdef Py_ssize_t _packet(self, const unsigned char *src, Py_ssize_t pos, Py_ssize_t length,
                            bint big, Py_ssize_t o, bytes data) except -1

    cdef _fail(self, str reason, Py_ssize_t pos)
