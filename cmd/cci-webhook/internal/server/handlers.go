package server

import (
	"context"
	"fmt"
	"log/slog"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	cradmission "sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/cci-shim/cci-shim/admission"
)

// requestLog returns log with the request's identity: what an operator
// needs to find the pod and the API server's audit entry.
func requestLog(ctx context.Context, log *slog.Logger, pod *corev1.Pod) *slog.Logger {
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	l := log.With("pod", pod.Namespace+"/"+name)
	if req, err := cradmission.RequestFromContext(ctx); err == nil {
		l = l.With("uid", string(req.UID), "operation", string(req.Operation), "user", req.UserInfo.Username)
		if req.SubResource != "" {
			l = l.With("subresource", req.SubResource)
		}
	}
	return l
}

// mutator is the mutating webhook: admission.Mutate on cci pods.
type mutator struct {
	runtimeClasses []string
	decoder        cradmission.Decoder
	log            *slog.Logger
}

var _ cradmission.Defaulter[*corev1.Pod] = (*mutator)(nil)

// Default rewrites pod; an error denies the request with its message.
func (m *mutator) Default(ctx context.Context, pod *corev1.Pod) error {
	if !admission.IsCCIPod(pod, m.runtimeClasses...) {
		return nil
	}
	log := requestLog(ctx, m.log, pod)
	var old *corev1.Pod
	if req, err := cradmission.RequestFromContext(ctx); err == nil && req.Operation == admissionv1.Update {
		old = &corev1.Pod{}
		if err := m.decoder.DecodeRaw(req.OldObject, old); err != nil {
			log.Error("decoding the old pod", "err", err)
			return fmt.Errorf("decoding oldObject: %w", err)
		}
	}
	changes, err := admission.Mutate(pod, old)
	if err != nil {
		log.Info("denied", "webhook", "mutate", "reason", err.Error())
		return err
	}
	for _, c := range changes {
		log.Info("image replaced", "container", c.Container, "from", c.From, "to", c.To)
	}
	log.Debug("mutated", "images_replaced", len(changes))
	return nil
}

// validator is the validating webhook: admission.Validate on cci pods.
type validator struct {
	runtimeClasses []string
	log            *slog.Logger
}

var _ cradmission.Validator[*corev1.Pod] = (*validator)(nil)

func (v *validator) check(ctx context.Context, pod, old *corev1.Pod) (cradmission.Warnings, error) {
	if !admission.IsCCIPod(pod, v.runtimeClasses...) {
		return nil, nil
	}
	if err := admission.Validate(pod, old); err != nil {
		requestLog(ctx, v.log, pod).Info("denied", "webhook", "validate", "reason", err.Error())
		return nil, err
	}
	return nil, nil
}

func (v *validator) ValidateCreate(ctx context.Context, pod *corev1.Pod) (cradmission.Warnings, error) {
	return v.check(ctx, pod, nil)
}

func (v *validator) ValidateUpdate(ctx context.Context, old, pod *corev1.Pod) (cradmission.Warnings, error) {
	return v.check(ctx, pod, old)
}

func (v *validator) ValidateDelete(context.Context, *corev1.Pod) (cradmission.Warnings, error) {
	return nil, nil
}
