// Package v1alpha1 contains the SessionCluster API of session-operator.
// +kubebuilder:object:generate=true
// +groupName=session.sessionops.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the SessionCluster API.
	GroupVersion = schema.GroupVersion{Group: "session.sessionops.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the API types with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the API types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
