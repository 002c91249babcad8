import cython


cdef class Pump:
    cdef public list consumers
    cdef public object lost_error
    cdef public object stopped
    cdef public double heartbeat
    cdef public double last_frame
    cdef public object lost

    @cython.locals(count=Py_ssize_t, i=Py_ssize_t, consumers=list)
    cpdef int run(self, read, double timeout) except? -1
