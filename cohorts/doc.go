// Package cohorts holds the connector's domain rules, free of any transport:
// decoding and validating a membership change ([Decode]), normalising and
// hashing its identifiers ([Identifiers.Hash]), its deterministic event id
// ([Membership.EventID]), decoding and validating activations
// ([DecodeActivation], [Activation.Validate]), the single override → default
// decision for a Tag ID ([ResolveTag]) and the [Resolver] that maps a
// membership to the activations (and so the ad accounts) it must reach.
//
// The package imports nothing of the project and nothing outside the standard
// library, so that every rule here can be tested and fuzzed in isolation.
package cohorts
