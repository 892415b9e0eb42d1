// Package dtpb is the generated Go code of duro's copy of the Durable Task
// sidecar protocol (durabletask.proto): the messages and the
// TaskHubSidecarService client and server stubs. See README.md for how it
// is generated.
package dtpb

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative durabletask.proto
