import cython
from cpython.bytes cimport PyBytes_FromStringAndSize

from cancorder._fast.wire cimport valid_length, write_header, write_hex, write_hex_digits

cdef Py_ssize_t _HEADER


@cython.locals(value=cython.ulonglong, i=cython.int)
cdef unsigned long long _stamp(const unsigned char *src, Py_ssize_t pos) noexcept

@cython.locals(value=cython.uint, i=cython.int)
cdef unsigned int _can_id(const unsigned char *src, Py_ssize_t pos) noexcept


cdef Py_ssize_t _record_end(const unsigned char *src, Py_ssize_t pos, Py_ssize_t size) except -1

cdef int _hex_value(unsigned char c) noexcept


cdef class CandumpEncoder:
    cdef bytes _channel
    cdef bytearray _buffer
    cdef public unsigned long long frames

    @cython.locals(size=Py_ssize_t, nchan=Py_ssize_t, need=Py_ssize_t, src=cython.p_uchar,
                   dst=cython.p_uchar, hexd=cython.p_uchar, chan=cython.p_uchar,
                   pos=Py_ssize_t, o=Py_ssize_t, count=Py_ssize_t, end=Py_ssize_t,
                   micros=cython.ulonglong, can_id=cython.uint, flags=cython.uchar,
                   seconds=cython.ulonglong, fraction=cython.ulonglong, k=cython.int,
                   i=Py_ssize_t, tmp=cython.uchar[24])
    cpdef bytes encode(self, records)


@cython.locals(size=Py_ssize_t, src=cython.p_uchar, pos=Py_ssize_t, count=Py_ssize_t)
cpdef Py_ssize_t count_records(records) except -1

@cython.locals(size=Py_ssize_t, src=cython.p_uchar, pos=Py_ssize_t, end=Py_ssize_t)
cpdef Py_ssize_t whole_prefix(records, Py_ssize_t start, Py_ssize_t limit) except -1

@cython.locals(src=cython.p_uchar)
cpdef unsigned long long first_stamp(records, Py_ssize_t start=*) except? 0

@cython.locals(size=Py_ssize_t, src=cython.p_uchar, pos=Py_ssize_t)
cpdef Py_ssize_t due_prefix(records, unsigned long long limit_us, Py_ssize_t start=*) except -1


cdef class Retimer:
    cdef public double speed
    cdef public unsigned long long max_gap_us
    cdef public long long out_us
    cdef public unsigned long long src_us
    cdef bint _started
    cdef double _carry

    @cython.locals(size=Py_ssize_t, out=bytearray, src=cython.p_uchar,
                   pos=Py_ssize_t, end=Py_ssize_t, stamp=cython.ulonglong,
                   gap=cython.ulonglong, scaled=cython.double, whole=cython.longlong)
    cpdef bytes retime(self, records)


cdef class CandumpParser:
    cdef object _want
    cdef bytes _tail
    cdef public Py_ssize_t line
    cdef public unsigned long long frames
    cdef public unsigned long long remote
    cdef public unsigned long long error
    cdef public unsigned long long other_channel
    cdef public bytes first_channel
    cdef public list runs
    cdef bytes _run_channel
    cdef public object error_reason
    cdef public Py_ssize_t error_line
    cdef bytearray _out
    cdef Py_ssize_t _blank_line
    cdef bint _started

    @cython.locals(data=bytes, size=Py_ssize_t, last=Py_ssize_t, stop=Py_ssize_t,
                   need=Py_ssize_t, src=cython.p_uchar, dst=cython.p_uchar, o=Py_ssize_t,
                   pos=Py_ssize_t, eol=Py_ssize_t, end=Py_ssize_t, p=Py_ssize_t,
                   next_pos=Py_ssize_t, seconds=cython.ulonglong, ndig=cython.int,
                   fraction=cython.ulonglong, nfrac=cython.int, chan_start=Py_ssize_t,
                   chan_end=Py_ssize_t, id_start=Py_ssize_t, can_id=cython.ulonglong,
                   v=cython.int, id_len=Py_ssize_t, flags=cython.int, remote=cython.bint,
                   data_start=Py_ssize_t, n=Py_ssize_t, hi=cython.int, lo=cython.int,
                   micros=cython.ulonglong)
    cpdef bytes feed(self, chunk, bint final=*)

    cdef bint _channel_wanted(self, bytes data, Py_ssize_t start, Py_ssize_t end)

    @cython.locals(run=bytes, n=Py_ssize_t, i=Py_ssize_t)
    cdef bint _same_as_run(self, bytes data, Py_ssize_t start, Py_ssize_t end) except -1


cdef Py_ssize_t _BLF_HEADER, _BLF_MESSAGE2, _BLF_FD64, _BLF_MAX_OBJECT
cdef unsigned int _BLF_TIME_ONE_NANS, _BLF_EXT, _BLF_FD_EDL, _BLF_FD_BRS, _BLF_FD_ESI

@cython.locals(i=cython.int)
cdef void _put_le(unsigned char *dst, Py_ssize_t o, unsigned long long value, int n) noexcept

cdef int _fd_dlc(Py_ssize_t n) noexcept

cdef Py_ssize_t _blf_object_header(unsigned char *dst, Py_ssize_t o, Py_ssize_t size,
                                   unsigned int kind, unsigned long long stamp_ns) noexcept


cdef class BlfEncoder:
    cdef public unsigned int channel
    cdef public unsigned long long last_us
    cdef bytearray _buffer
    cdef public Py_ssize_t size
    cdef public Py_ssize_t frames
    cdef public bint started
    cdef public unsigned long long start_us
    cdef public unsigned long long stop_us
    cdef public unsigned long long objects
    cdef public unsigned long long unholdable

    @cython.locals(size=Py_ssize_t, src=cython.p_uchar, dst=cython.p_uchar,
                   channel=cython.uint, limit=Py_ssize_t, pos=Py_ssize_t, o=Py_ssize_t,
                   count=Py_ssize_t, end=Py_ssize_t, micros=cython.ulonglong,
                   offset_ns=cython.ulonglong, can_id=cython.uint, flags=cython.uchar,
                   n=Py_ssize_t, obj=Py_ssize_t, fd_flags=cython.uint, i=Py_ssize_t)
    cpdef Py_ssize_t add(self, records, Py_ssize_t start=*) except -1

    cpdef bint full(self)

    cpdef bytes take(self)
