import cython


cdef class Row:
    cdef public object key
    cdef public object channel
    cdef public unsigned long long can_id
    cdef public unsigned char flags
    cdef bytearray _data
    cdef public Py_ssize_t length
    cdef public unsigned long long count
    cdef public long long last_us
    cdef public double sum_period
    cdef public double sum_period2
    cdef public double seen
    cdef public double changed
    cdef public unsigned long long diff
    cdef public list changed_at
    cdef public unsigned long long counted
    cdef public double rate
    cdef public object shown
    cdef public unsigned long long shown_count


@cython.locals(unlisted=Py_ssize_t, key=cython.ulonglong, ext_flag=cython.uchar,
               ext_bit=cython.ulonglong, row=Row, can_id=cython.ulonglong, flags=cython.uchar,
               micros=cython.longlong, src=bytes, p=cython.p_uchar)
cpdef Py_ssize_t count_frames(dict rows, object frames, object order, object channel, double now,
                              Py_ssize_t max_rows) except -1

@cython.locals(size=Py_ssize_t, src=bytes, p=cython.p_uchar, keep=Py_ssize_t, starts=list,
               header=Py_ssize_t, ext_flag=cython.uchar, ext_bit=cython.ulonglong,
               pos=Py_ssize_t, frames=Py_ssize_t, unlisted=Py_ssize_t, n=Py_ssize_t,
               end=Py_ssize_t, high=cython.ulonglong, low=cython.ulonglong,
               micros=cython.longlong, can_id=cython.ulonglong, flags=cython.uchar,
               key=cython.ulonglong, row=Row, tail=Py_ssize_t)
cpdef tuple count_records(dict rows, object records, object order, object channel, double now,
                          Py_ssize_t max_rows, Py_ssize_t keep_last)

@cython.locals(period=cython.longlong, fperiod=cython.double, q=cython.p_uchar,
               one=cython.ulonglong, mask=cython.ulonglong, differs=bint, i=Py_ssize_t)
cdef int _take(Row row, long long micros, unsigned char flags, const unsigned char *p,
               Py_ssize_t start, Py_ssize_t n, double now) except -1

@cython.locals(intervals=cython.longlong, period=str, parts=list, at=cython.double, ident=str,
               data=str)
cpdef bytes row_json(Row row, str named)

@cython.locals(row=Row, fresh=cython.double)
cpdef int tick_rows(dict rows, double now, double elapsed, double weight) except -1

@cython.locals(diff=cython.ulonglong, n=Py_ssize_t, changed_at=list, i=Py_ssize_t)
cdef int _stamp(Row row, double now) except -1
