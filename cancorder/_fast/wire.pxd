import cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.string cimport memcpy


cpdef bint valid_length(Py_ssize_t n, bint is_fd)

cdef Py_ssize_t write_hex(unsigned char *out, Py_ssize_t o, const unsigned char *src,
                         Py_ssize_t start, Py_ssize_t end, const unsigned char *hexd) noexcept

@cython.locals(k=Py_ssize_t)
cdef Py_ssize_t write_hex_digits(unsigned char *out, Py_ssize_t o, unsigned int value,
                                Py_ssize_t digits, const unsigned char *hexd) noexcept

@cython.locals(value=cython.longlong, v=cython.uchar)
cdef long long hex_number(const unsigned char *p, Py_ssize_t start, Py_ssize_t end,
                          const unsigned char *hexval) noexcept

cpdef Py_ssize_t write_header(bytearray buf, Py_ssize_t pos, unsigned long long micros,
                              unsigned long long can_id, unsigned char flags,
                              unsigned char n) except -1

cdef Py_ssize_t put_header(unsigned char *p, Py_ssize_t pos, unsigned long long micros,
                           unsigned long long can_id, unsigned char flags,
                           unsigned char n) noexcept


cdef class Packer:
    cdef public double ts_offset
    cdef public Py_ssize_t packed
    cdef public Py_ssize_t remote
    cdef public Py_ssize_t error
    cdef public Py_ssize_t invalid
    cdef bytearray _buffer

    @cython.locals(count=Py_ssize_t, i=Py_ssize_t, pos=Py_ssize_t, n=Py_ssize_t,
                   start=Py_ssize_t, can_id=cython.longlong, flags=cython.uchar,
                   stamp=cython.double, offset=cython.double, micros=cython.ulonglong,
                   scaled=cython.double,
                   src=cython.p_uchar, buf=bytearray, ext_flag=cython.uchar,
                   fd_flag=cython.uchar, brs_flag=cython.uchar, esi_flag=cython.uchar,
                   max_std=cython.longlong, max_ext=cython.longlong, base=cython.p_uchar)
    cpdef bytes pack(self, list messages)


cdef class RecordFilter:
    cdef public tuple rules
    cdef list _ids
    cdef list _masks
    cdef list _ext
    cdef list _inverse
    cdef Py_ssize_t _count
    cdef public unsigned long long filtered

    @cython.locals(i=Py_ssize_t, ext=int, match=bint)
    cpdef bint passes(self, unsigned long long can_id, int extended)

    @cython.locals(size=Py_ssize_t, pos=Py_ssize_t, end=Py_ssize_t, keep_from=Py_ssize_t,
                   can_id=cython.ulonglong, p=cython.p_uchar, src=bytes, kept=bytearray,
                   dropped=bint, header=Py_ssize_t, ext_flag=cython.uchar)
    cpdef apply(self, records)


cdef class StreamDecoder:
    cdef bytearray _buf
    cdef public unsigned long long offset
    cdef public unsigned long long frames
    cdef object _error

    @cython.locals(size=Py_ssize_t, pos=Py_ssize_t, end=Py_ssize_t, n=cython.uint,
                   flags=cython.uint, can_id=cython.uint, micros=cython.ulonglong,
                   p=cython.p_uchar, out=list, buf=bytearray, header=Py_ssize_t,
                   defined=cython.uint, ext_flag=cython.uint, fd_flag=cython.uint,
                   brs_esi=cython.uint, max_std=cython.uint, max_ext=cython.uint)
    cpdef list feed(self, chunk)

    cdef _fail(self, str reason, Py_ssize_t pos, list frames)


@cython.locals(size=Py_ssize_t, pos=Py_ssize_t, end=Py_ssize_t, count=Py_ssize_t)
cpdef tuple take_records(const unsigned char[:] buf, Py_ssize_t start, Py_ssize_t limit)
