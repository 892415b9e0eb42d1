package main

// The demo's order workflow, written the way a duro user writes one:
// orchestrations that only decide and wait, and activities that do the work
// (here they only print what they would do).

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/durohq/duro"
)

// Names of the demo's orchestrations, activities and event.
const (
	demoOrchestration = "ProcessOrder"
	demoSubOrch       = "IssueInvoice"
	demoShippedEvent  = "shipped"
	demoPayOrch       = "PayOrder"   // the second part's orchestration
	demoChargeCard    = "ChargeCard" // its at-most-once activity
)

// Demo timings: short, so the demo takes a couple of seconds.
const (
	demoShipmentTimeout = 10 * time.Second       // how long ProcessOrder waits for "shipped"
	demoReturnWindow    = 500 * time.Millisecond // the durable timer
	demoWorkTime        = 60 * time.Millisecond  // each activity "works" this long
	demoHangLimit       = 10 * time.Second       // the interrupted charge never waits longer
)

// Custom statuses ProcessOrder publishes; the client prints them.
const (
	stepReserving = "reserving stock"
	stepCharging  = "charging payment"
	stepNotifying = "notifying customer"
	stepShipping  = "awaiting shipment"
	stepWindow    = "waiting out the return window"
	stepInvoicing = "issuing invoice"
	stepDone      = "done"
)

type demoOrder struct {
	ID          string `json:"id"`
	Customer    string `json:"customer"`
	Email       string `json:"email"`
	Phone       string `json:"phone"`
	Item        string `json:"item"`
	Quantity    int    `json:"quantity"`
	AmountCents int    `json:"amountCents"`
}

type demoReceipt struct {
	OrderID     string   `json:"orderId"`
	Reservation string   `json:"reservation"`
	Payment     string   `json:"payment"`
	Notified    []string `json:"notified"`
	Shipped     bool     `json:"shipped"`
	Tracking    string   `json:"tracking,omitempty"`
	Invoice     string   `json:"invoice"`
}

type demoShipment struct {
	Carrier  string `json:"carrier"`
	Tracking string `json:"tracking"`
}

type demoNotice struct {
	Channel string `json:"channel"`
	To      string `json:"to"`
	Text    string `json:"text"`
}

// processOrder is the demo's orchestration.
func processOrder(ctx *duro.OrchestrationContext, o demoOrder) (*demoReceipt, error) {
	r := &demoReceipt{OrderID: o.ID}
	step := func(s string) { _ = ctx.SetCustomStatus(s) }

	step(stepReserving)
	if err := ctx.CallActivity("ReserveStock", o).Await(&r.Reservation); err != nil {
		return nil, err
	}

	step(stepCharging)
	if err := ctx.CallActivity("ChargePayment", o).Await(&r.Payment); err != nil {
		return nil, err
	}

	// Fan out: three notifications run in parallel; AwaitAll joins them.
	step(stepNotifying)
	notices := []demoNotice{
		{Channel: "email", To: o.Email, Text: "order " + o.ID + " confirmed"},
		{Channel: "sms", To: o.Phone, Text: "payment received"},
		{Channel: "push", To: o.Customer, Text: "we are packing your order"},
	}
	tasks := make([]*duro.Task, len(notices))
	for i, n := range notices {
		tasks[i] = ctx.CallActivity("SendNotification", n)
	}
	if err := ctx.AwaitAll(tasks...); err != nil {
		return nil, err
	}
	for _, n := range notices {
		r.Notified = append(r.Notified, n.Channel)
	}

	// Wait for a person (or another system) to say the parcel left.
	step(stepShipping)
	var s demoShipment
	switch err := ctx.WaitForEvent(demoShippedEvent, demoShipmentTimeout).Await(&s); {
	case errors.Is(err, duro.ErrTimeout):
		r.Shipped = false
	case err != nil:
		return nil, err
	default:
		r.Shipped, r.Tracking = true, s.Carrier+" "+s.Tracking
	}

	// A durable timer: it would fire even if every worker restarted.
	step(stepWindow)
	if err := ctx.Sleep(demoReturnWindow); err != nil {
		return nil, err
	}

	step(stepInvoicing)
	if err := ctx.CallSubOrchestration(demoSubOrch, o).Await(&r.Invoice); err != nil {
		return nil, err
	}
	step(stepDone)
	return r, nil
}

// issueInvoice is the demo's sub-orchestration.
func issueInvoice(ctx *duro.OrchestrationContext, o demoOrder) (string, error) {
	var number string
	err := ctx.CallActivity("RenderInvoice", o).Await(&number)
	return number, err
}

// payOrder is the second part's orchestration: one payment, made by an
// activity that must never run twice.
func payOrder(ctx *duro.OrchestrationContext, o demoOrder) (string, error) {
	var payment string
	err := ctx.CallActivity(demoChargeCard, o).Await(&payment)
	return payment, err
}

// demoActivities are the demo's activities. They print what they do.
type demoActivities struct {
	out *demoPrinter
	// charging is closed when the first delivery of ChargePayment starts, so
	// the demo can stop the worker under it.
	charging    chan struct{}
	interrupted atomic.Bool
	// cardCharging is charging for ChargeCard.
	cardCharging    chan struct{}
	cardInterrupted atomic.Bool
}

func newDemoActivities(out *demoPrinter) *demoActivities {
	return &demoActivities{out: out, charging: make(chan struct{}), cardCharging: make(chan struct{})}
}

func (d *demoActivities) register(r *duro.Registry) {
	duro.RegisterOrchestration(r, demoOrchestration, processOrder)
	duro.RegisterOrchestration(r, demoSubOrch, issueInvoice)
	duro.RegisterOrchestration(r, demoPayOrch, payOrder)
	duro.RegisterActivity(r, "ReserveStock", d.reserveStock)
	duro.RegisterActivity(r, "ChargePayment", d.chargePayment)
	duro.RegisterActivity(r, "SendNotification", d.sendNotification)
	duro.RegisterActivity(r, "RenderInvoice", d.renderInvoice)
	// ChargeCard's code runs on the first delivery only: a later delivery
	// suspends the instance until an operator decides.
	duro.RegisterActivity(r, demoChargeCard, d.chargeCard,
		duro.ActivityOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateSuspend})
}

func (d *demoActivities) reserveStock(ctx duro.ActivityContext, o demoOrder) (string, error) {
	d.out.activity(ctx, "reserving %d × %s", o.Quantity, o.Item)
	if err := work(ctx); err != nil {
		return "", err
	}
	return "RES-" + o.ID, nil
}

// chargePayment shows what the attempt number is for: on a redelivery the
// code cannot know whether the earlier delivery charged the card, so it asks
// before charging again.
func (d *demoActivities) chargePayment(ctx duro.ActivityContext, o demoOrder) (string, error) {
	if ctx.IsFirstAttempt() {
		d.out.activity(ctx, "charging %s to %s's card", money(o.AmountCents), o.Customer)
	} else {
		d.out.activity(ctx, "an earlier delivery may have charged the card: asking the provider first")
		d.out.activity(ctx, "the provider has no charge for %s: charging %s now", o.ID, money(o.AmountCents))
	}
	if err := work(ctx); err != nil {
		return "", err
	}
	if ctx.IsFirstAttempt() && d.interrupted.CompareAndSwap(false, true) {
		close(d.charging) // the demo now stops this worker, as a crash or a deploy would
		t := time.NewTimer(demoHangLimit)
		defer t.Stop()
		select {
		case <-ctx.Done():
			d.out.activity(ctx, "interrupted before the payment provider answered")
			return "", ctx.Err()
		case <-t.C:
		}
	}
	payment := "PAY-" + o.ID
	d.out.activity(ctx, "charged: %s", payment)
	return payment, nil
}

// chargeCard charges a card. Registered AtMostOnce, it runs on the first
// delivery only; the demo stops the worker under that delivery.
func (d *demoActivities) chargeCard(ctx duro.ActivityContext, o demoOrder) (string, error) {
	d.out.activity(ctx, "charging %s to %s's card", money(o.AmountCents), o.Customer)
	if ctx.IsFirstAttempt() && d.cardInterrupted.CompareAndSwap(false, true) {
		close(d.cardCharging) // the demo now stops this worker
		t := time.NewTimer(demoHangLimit)
		defer t.Stop()
		select {
		case <-ctx.Done():
			d.out.activity(ctx, "interrupted before the payment provider answered")
			return "", ctx.Err()
		case <-t.C:
		}
	}
	if err := work(ctx); err != nil {
		return "", err
	}
	payment := "PAY-" + o.ID
	d.out.activity(ctx, "charged: %s", payment)
	return payment, nil
}

func (d *demoActivities) sendNotification(ctx duro.ActivityContext, n demoNotice) (string, error) {
	d.out.activity(ctx, "%-5s to %s: %q", n.Channel, n.To, n.Text)
	// The channels take different times, so that their results arrive
	// one after the other, in a repeatable order.
	extra := map[string]time.Duration{"sms": 15 * time.Millisecond, "push": 30 * time.Millisecond}[n.Channel]
	if err := workFor(ctx, demoWorkTime+extra); err != nil {
		return "", err
	}
	return "sent", nil
}

func (d *demoActivities) renderInvoice(ctx duro.ActivityContext, o demoOrder) (string, error) {
	number := "INV-" + strings.TrimPrefix(o.ID, "order-")
	d.out.activity(ctx, "invoice %s for %s, instance %s", number, money(o.AmountCents), ctx.InstanceID())
	if err := work(ctx); err != nil {
		return "", err
	}
	return number, nil
}

// work stands for the time an activity's real work takes.
func work(ctx duro.ActivityContext) error { return workFor(ctx, demoWorkTime) }

// workFor is work that takes d.
func workFor(ctx duro.ActivityContext, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func money(cents int) string {
	return fmt.Sprintf("$%d.%02d", cents/100, cents%100)
}
