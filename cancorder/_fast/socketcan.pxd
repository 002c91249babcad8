import cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport EAGAIN, EINTR, errno
from libc.string cimport memcpy

from cancorder._fast.wire cimport put_header, valid_length


cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    enum: POLLIN

cdef extern from "<sys/socket.h>" nogil:
    # struct mmsghdr *, struct timespec *: the buffers are laid out by the Python side
    int recvmmsg(int sockfd, void *msgvec, unsigned int vlen, int flags, void *timeout)


cdef int MSG_DONTWAIT


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

    @cython.locals(headers=cython.p_void, slots=cython.uint, n=cython.int, failure=cython.int,
                   waiting=pollfd)
    cpdef int receive(self, int fd, int timeout_ms)
