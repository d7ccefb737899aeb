package jira

import (
	"fmt"
	"strings"

	"github.com/hsm-agent/hsm-agent/rma/desk"
)

// maxSummary is Jira's limit on an issue summary.
const maxSummary = 255

// summary is the issue summary: the severity and the case's summary.
func summary(t desk.Ticket) string {
	s := fmt.Sprintf("[S%d] %s", t.Case.Severity, strings.TrimSpace(t.Case.Summary))
	if r := []rune(s); len(r) > maxSummary {
		s = string(r[:maxSummary-3]) + "..."
	}
	return s
}

// intro is the first lines of the issue text.
func intro(t desk.Ticket) []string {
	lines := []string{fmt.Sprintf("hsm-agent case %s (%s): %s", t.Case.ID, t.Event, t.Case.Summary)}
	if d := strings.TrimSpace(t.Case.Description); d != "" {
		lines = append(lines, d)
	}
	return lines
}

// plainDescription is the issue text for the plain-text APIs (REST v2,
// servicedeskapi).
func plainDescription(t desk.Ticket) string {
	text := strings.Join(intro(t), "\n\n") + "\n\n" + desk.PlainText(t.Facts())
	if n := t.BundleNote(); n != "" {
		text += "\n" + n + "\n"
	}
	return text
}

// commentHead is a comment's first line.
func commentHead(t desk.Ticket) string {
	return fmt.Sprintf("hsm-agent case %s: %s (event %d)", t.Case.ID, t.Event, t.Sequence)
}

// plainComment is a later event as plain text, with note appended.
func plainComment(t desk.Ticket, note string) string {
	text := commentHead(t) + "\n\n" + desk.PlainText(t.StepFacts())
	if n := t.BundleNote(); n != "" {
		text += "\n" + n + "\n"
	}
	if note != "" {
		text += "\n" + note + "\n"
	}
	return text
}

// ADF (Atlassian Document Format) nodes: a doc of paragraphs and bullet
// lists of text, the parts REST v3 takes for descriptions and comments.
type adfNode = map[string]any

// adfText is a text node (ADF forbids empty ones), bold when strong.
func adfText(s string, strong bool) adfNode {
	if s == "" {
		s = " "
	}
	n := adfNode{"type": "text", "text": s}
	if strong {
		n["marks"] = []adfNode{{"type": "strong"}}
	}
	return n
}

// adfPara is a paragraph of nodes.
func adfPara(nodes ...adfNode) adfNode {
	return adfNode{"type": "paragraph", "content": nodes}
}

// adfFacts is a bullet list of "Label: value" items, the label bold.
func adfFacts(facts []desk.Fact) adfNode {
	items := make([]adfNode, 0, len(facts))
	for _, f := range facts {
		items = append(items, adfNode{"type": "listItem", "content": []adfNode{adfPara(adfText(f.Label+": ", true), adfText(f.Value, false))}})
	}
	return adfNode{"type": "bulletList", "content": items}
}

// adfDoc is a version-1 ADF document.
func adfDoc(content []adfNode) adfNode {
	return adfNode{"type": "doc", "version": 1, "content": content}
}

// adfDescription is the issue text as ADF (REST v3).
func adfDescription(t desk.Ticket) adfNode {
	var content []adfNode
	for _, l := range intro(t) {
		content = append(content, adfPara(adfText(l, false)))
	}
	content = append(content, adfFacts(t.Facts()))
	if n := t.BundleNote(); n != "" {
		content = append(content, adfPara(adfText(n, false)))
	}
	return adfDoc(content)
}

// adfComment is a later event as ADF (REST v3), with note appended.
func adfComment(t desk.Ticket, note string) adfNode {
	content := []adfNode{adfPara(adfText(commentHead(t), true)), adfFacts(t.StepFacts())}
	if n := t.BundleNote(); n != "" {
		content = append(content, adfPara(adfText(n, false)))
	}
	if note != "" {
		content = append(content, adfPara(adfText(note, false)))
	}
	return adfDoc(content)
}
