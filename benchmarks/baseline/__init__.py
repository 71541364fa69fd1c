"""C baseline programs (recvmmsg receiver, sendmmsg sender) and their build helper."""
