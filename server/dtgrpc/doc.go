// Package dtgrpc serves the Durable Task sidecar protocol
// (TaskHubSidecarService, the gRPC protocol of the Durable Task SDKs for
// JavaScript, .NET, Java and Python) on a duro store, so that a stock SDK's
// client and worker run on duro with its guarantees.
package dtgrpc
