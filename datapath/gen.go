package datapath

// The generated netward_bpfel.go and netward_bpfel.o are committed, so building needs no
// clang; regenerate after editing bpf/*.c or bpf/*.h (needs apt clang llvm libbpf-dev).
//go:generate go tool bpf2go -tags linux -target bpfel -type endpoint -type ipcache_key -type ipcache_value -type policy_key -type policy_entry -type ct_key -type ct_value -type metric_value -type verdict_event netward bpf/netward.c -- -I/usr/include/x86_64-linux-gnu -I./bpf -O2 -g -Wall
