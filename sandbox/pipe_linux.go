package sandbox

import (
	"os"
	"syscall"
	"unsafe"
)

// pipeBuffered is how many bytes a pipe holds unread (FIONREAD), 0 if unknown.
func pipeBuffered(f *os.File) int {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	var n int32
	ctlErr := rc.Control(func(fd uintptr) {
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n))); errno != 0 {
			n = 0
		}
	})
	if ctlErr != nil {
		return 0
	}
	return int(n)
}
