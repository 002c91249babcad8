import cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport EAGAIN, EINTR, ENOBUFS, errno
from libc.string cimport memcpy, memset
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, nanosleep, timespec

from cancorder._fast.wire cimport put_header, valid_length


cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    enum: POLLIN
    enum: POLLOUT

cdef extern from "<sys/socket.h>" nogil:
    # struct mmsghdr *, struct timespec *: the buffers are laid out by the Python side
    int recvmmsg(int sockfd, void *msgvec, unsigned int vlen, int flags, void *timeout)

cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len

cdef extern from "<sys/socket.h>" nogil:
    struct msghdr:
        void *msg_name
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int sendmmsg(int sockfd, mmsghdr *msgvec, unsigned int vlen, int flags)

ctypedef mmsghdr *mmsghdr_p
ctypedef iovec *iovec_p


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


@cython.locals(value=cython.ulonglong)
cdef unsigned long long be32(const unsigned char *p, Py_ssize_t pos) noexcept

@cython.locals(now=timespec)
cdef long long monotonic_ms() noexcept nogil

@cython.locals(p=cython.p_uchar)
cdef Py_ssize_t skip_records(bytes records, Py_ssize_t pos, Py_ssize_t k) except -1


cdef class SocketcanReader:
    cdef public FrameUnpacker unpacker
    cdef public int fd
    cdef public object lost
    cdef public object idle
    cdef public object after
    cdef public bint watching

    @cython.locals(unpacker=FrameUnpacker, count=cython.int, now=timespec,
                   now_us=cython.ulonglong)
    cpdef bytes read(self, double timeout)


cdef class FramePacker:
    cdef public Py_ssize_t slots
    cdef public bytearray frames
    cdef list _sizes
    cdef bytearray _headers
    cdef bytearray _iovecs
    cdef public unsigned long long sent
    cdef public unsigned long long queue_full
    cdef public unsigned long long buffer_full
    cdef int _failure
    cdef object _poller
    cdef int _poll_fd

    @cython.locals(hdr=mmsghdr_p, iov=iovec_p, f=cython.p_uchar, i=Py_ssize_t,
                   fp=Py_ssize_t)
    cdef int _aim(self) except -1

    @cython.locals(p=cython.p_uchar, f=cython.p_uchar, iov=iovec_p, ext_flag=cython.uchar,
                   fd_flag=cython.uchar, brs_flag=cython.uchar, esi_flag=cython.uchar,
                   count=Py_ssize_t, n=cython.uchar, flags=cython.uchar,
                   raw_id=cython.ulonglong, fp=Py_ssize_t, fd_flags=cython.uchar,
                   size=Py_ssize_t)
    cdef Py_ssize_t _pack(self, bytes records, Py_ssize_t pos, Py_ssize_t total) except -1

    @cython.locals(hdr=mmsghdr_p, k=cython.int, failure=cython.int)
    cdef Py_ssize_t _send_slots(self, int fd, Py_ssize_t first, Py_ssize_t count) except -1

    @cython.locals(ready=pollfd, pause=timespec)
    cdef int _wait(self, int fd, int failure, long pause_us, long long timeout_ms) except -1

    @cython.locals(total=Py_ssize_t, pos=Py_ssize_t, deadline=cython.longlong,
                   pause_us=cython.long, count=Py_ssize_t, done=Py_ssize_t, k=Py_ssize_t,
                   failure=cython.int, now_ms=cython.longlong)
    cpdef Py_ssize_t send_batch(self, int fd, bytes records, int timeout_ms) except? -1
