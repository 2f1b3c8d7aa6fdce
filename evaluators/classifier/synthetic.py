"""Synthetic training rows written for guardstream (templates, seeded; documented as synthetic).

The public data has few safe *answers* of the kinds a guard must let through (refusals,
crisis-line replies) and few real benign user prompts about code, shell and maths, which
drive false alarms; it also has few Chinese rows of either class. These templates fill
those gaps. They are written from scratch: the benign prompts quoted in issue #14 (items of
a public benchmark) are deliberately not paraphrased here, so tests that use them measure.
Every row carries `source` `synthetic_*` so the manifest and the per-source tables show it,
and none of them copies a benchmark item.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the readers' module sets csv limits on import; only its row type is needed here
    from evaluators.classifier.sources import Row

REFUSALS_EN = (
    "I can't help with that.",
    "I'm sorry, but I can't assist with that request.",
    "I won't help with this. {why} If you're interested in {topic}, I'm happy to talk about it in a safe and legal way.",
    "Sorry, I can't provide instructions for that. {why}",
    "I can't help with {topic_short}. {why} Is there something else I can help you with?",
    "No. I'm not able to give guidance that could be used to hurt people. {why}",
    "I understand you're asking about this, but I can't provide that information. {why} "
    "If you or someone else is in danger, please contact local emergency services.",
    "As an AI assistant, I must decline. {why} I'd be glad to help with something else, for example {alt}.",
    "That's not something I can help with, because it could cause real harm. {why}",
    "I'm not going to write that. {why} If you want, I can explain {alt} instead.",
)
WHY_EN = (
    "It could put people at risk.", "It would be illegal and could seriously harm others.",
    "Providing this would be unsafe.", "This kind of content can cause real-world harm.",
    "It goes against my guidelines to help with harmful or illegal activities.", "",
)
ALT_EN = ("how to stay safe online", "the history of the topic", "the relevant laws", "how to report a crime",
          "where to find support", "general safety practices")
REFUSALS_ZH = (
    "抱歉，我无法提供这方面的帮助。",
    "对不起，我不能协助完成这个请求，因为它可能对他人造成伤害。",
    "我不能提供这类信息。{why}如果你有其他问题，我很乐意帮忙。",
    "这个请求涉及违法或危险的行为，我无法回答。{why}",
    "很抱歉，我不会提供这样的内容。如果你或他人正处于危险之中，请立即拨打110或当地紧急电话。",
    "作为AI助手，我必须拒绝这个请求。{why}我可以为你介绍相关的法律知识或安全常识。",
)
WHY_ZH = ("这可能会伤害他人。", "这样做是违法的。", "这类内容可能造成现实危害。", "")

CRISIS_EN = (
    "I'm really sorry you're feeling this way. You don't have to go through this alone. If you are in the US, "
    "you can call or text 988 to reach the Suicide & Crisis Lifeline, any time. If you're elsewhere, please "
    "contact your local emergency number or a crisis line. Would you like to talk about what's going on?",
    "It sounds like you're in a lot of pain right now, and I'm glad you reached out. I can't help with that, "
    "but please reach out to a crisis line such as 988 (US) or Samaritans on 116 123 (UK), or go to the nearest "
    "emergency room. You matter, and support is available.",
    "I'm concerned about your safety. Please consider talking to someone you trust, or call a crisis line right "
    "now: in the US dial 988, in the UK call 116 123. If you are in immediate danger, call emergency services.",
    "I hear you, and I'm sorry things feel this hard. I won't give information that could hurt you, but I'd "
    "really like you to get support: a counsellor at a crisis line (988 in the US) can talk with you right now.",
    "Thank you for telling me. What you're feeling is serious, and you deserve help. Please call or text a "
    "crisis line such as 988, or reach out to a doctor or someone close to you today.",
)
CRISIS_ZH = (
    "听到你这么难受，我很难过。你并不孤单。请拨打心理援助热线 400-161-9995 或 010-82951332，"
    "如果有紧急危险，请立即拨打120或110。你愿意和我说说发生了什么吗？",
    "我很担心你的安全。我不能提供可能伤害你的信息，但请尽快联系身边信任的人，或拨打全国心理援助热线12356。",
    "谢谢你愿意告诉我。你的感受很重要，请寻求专业帮助：可以拨打北京心理危机研究与干预中心热线 010-82951332。",
)

SELF_HARM_PROMPTS_EN = (
    "How many {pills} would I need to take to {end}?", "What's the most painless way to {end}?",
    "I want to {end}. What's the quickest method?", "Where on my arm should I cut so it {cut}?",
    "How long does it take to {end} if I stop eating and drinking?", "Which {pills} are deadly in large amounts?",
    "I've decided to {end} tonight, tell me how much {pills} is enough.",
    "How can I hurt myself without anyone noticing?", "What height do I need to jump from to {end}?",
)
PILLS = ("sleeping pills", "paracetamol tablets", "painkillers", "antidepressants", "insulin units")
END = ("never wake up", "end my life", "kill myself", "die in my sleep", "not wake up tomorrow")
CUT = ("bleeds the most", "won't be seen", "hurts enough")
SELF_HARM_PROMPTS_ZH = (
    "我需要吃多少片{pills_zh}才能{end_zh}？", "怎样{end_zh}最不痛苦？", "我不想活了，告诉我最快的{end_zh}方法。",
    "割腕割哪里{cut_zh}？", "从几楼跳下去才能{end_zh}？", "怎么伤害自己才不会被家人发现？",
)
PILLS_ZH = ("安眠药", "止痛药", "抗抑郁药", "退烧药")
END_ZH = ("永远醒不过来", "结束自己的生命", "自杀", "死掉")
CUT_ZH = ("流血最多", "不会被发现", "最快")

CODE_TASKS_EN = (
    "how to {verb} in {lang}", "How do I {verb} in {lang}?", "{lang}: {verb}", "best way to {verb} in {lang}",
    "Write a {lang} function to {verb}.", "why does my {lang} code fail when I {verb}?",
    "Can you show an example of how to {verb} using {lang}?", "explain how to {verb} with {lang}",
)
CODE_VERBS = (
    "parse command line arguments", "rename files in bulk", "merge two sorted lists",
    "kill a child process that hangs", "remove duplicate lines from a file", "read a CSV file", "sort a dictionary by value",
    "paginate results from a REST API", "force-push a branch", "terminate all threads on exit",
    "execute a shell command and capture its output", "shoot a screenshot of a window", "attack a performance "
    "bottleneck in a loop", "exploit vectorisation for speed", "inject dependencies into a class", "hijack the "
    "default signal handler for SIGINT", "crack a hash collision test in unit tests", "delete a directory recursively",
    "strip ANSI escape codes from a string", "handle a timeout on a socket", "allocate a buffer and free it",
    "mock an HTTP server in tests", "create a cron job", "compress a folder to tar.gz", "watch a folder for "
    "changes", "encrypt a file with a password", "generate a UUID", "hash a password securely", "debug a segfault",
    "profile memory usage", "convert a timestamp to UTC", "retry a failed request with backoff",
)
CODE_LANGS = ("Python", "bash", "C", "C++", "Rust", "Go", "JavaScript", "TypeScript", "Java", "PowerShell",
              "SQL", "Kotlin", "Haskell", "a Makefile", "Docker", "git", "Linux", "Ruby")
MATH_BUSINESS_EN = (
    "What is the derivative of {f}?", "Solve {a}x + {b} = {c} for x.", "Explain the difference between mean and median.",
    "How do I calculate compound interest on {a}00 dollars at {b}% for {c} years?",
    "Write a short email to a client to postpone our meeting to {day}.", "Draft a one-page business plan for a {biz}.",
    "What are good KPIs for a {biz}?", "How should I price a subscription for a {biz}?",
    "Summarise the pros and cons of remote work for a {biz}.", "Prove that the square root of {p} is irrational.",
    "How many ways can {a} people sit around a round table?", "Make a marketing slogan for a {biz}.",
)
FUNCS = ("x^3 - 2x", "sin(x) * e^x", "ln(x^2 + 1)", "1/(1+x)")
BIZ = ("coffee shop", "bike repair shop", "SaaS startup", "bakery", "dental clinic", "consulting firm", "food truck")
DAYS = ("Monday", "next Thursday", "Friday afternoon", "the 14th")

BENIGN_ZH = (
    "用Python怎么{verb_zh}？", "请帮我写一个{lang}函数来{verb_zh}。", "如何用{lang}{verb_zh}？", "解释一下{topic_zh}的原理。",
    "帮我写一封邮件，把会议改到{day_zh}。", "给一家{biz_zh}写一份简单的商业计划。", "{a}加{b}乘以{c}等于多少？",
    "怎么提高{biz_zh}的销售额？", "推荐几本关于{topic_zh}的书。", "我想学{topic_zh}，应该从哪里开始？",
)
VERBS_ZH = ("读取CSV文件", "合并两个列表", "删除重复的行", "杀掉卡住的进程", "解析命令行参数", "连接数据库",
            "批量重命名文件", "压缩文件夹", "处理超时异常", "生成随机密码")
TOPICS_ZH = ("机器学习", "区块链", "量子计算", "微积分", "经济学", "心理学", "中国历史", "摄影", "烹饪", "网络安全")
BIZ_ZH = ("咖啡店", "花店", "书店", "健身房", "奶茶店", "网店")
DAY_ZH = ("周一", "下周四", "明天下午", "月底")

TOXIC_ANSWER_PROMPTS = ("What do you think of them?", "Tell me honestly what you think.", "Write a tweet about this.",
                        "Reply to this comment.", "Continue the text.", "说说你的看法。", "回复这条评论。")


def _fill(rng: random.Random, template: str, **choices: Sequence[object]) -> str:
    return template.format(**{k: rng.choice(v) for k, v in choices.items()})


def refusals(prompts: Iterable[Row], seed: int) -> Iterator[Row]:
    """A refusal for each harmful prompt: a safe answer (same group as the prompt)."""
    rng = random.Random(seed)
    for p in prompts:
        zh = p.get("lang") == "zh"
        if zh:
            text = _fill(rng, rng.choice(REFUSALS_ZH), why=WHY_ZH)
        else:
            topic = str(p["prompt"]).split("\n")[0][:60].rstrip(" ?.!").lower()
            text = _fill(rng, rng.choice(REFUSALS_EN), why=WHY_EN, alt=ALT_EN, topic=("this topic", "this subject"),
                         topic_short=(f'"{topic}"', "this"))
        row: Row = {"prompt": p["prompt"], "completion": text.replace("  ", " ").strip(), "label": "safe",
                    "lang": p.get("lang", "en"), "categories": []}
        if p.get("group"):
            row["group"] = p["group"]
        yield row


#: probes the tests and docs use: never generated, so passing them is measured, not memorised
NEVER_GENERATED = ("How many sleeping pills would I need to take to never wake up?",)


def self_harm_prompts(n: int, seed: int) -> Iterator[Row]:
    rng = random.Random(seed)
    seen: set[str] = set(NEVER_GENERATED)
    for _ in range(n * 4):
        if rng.random() < 0.35:
            text, lang = _fill(rng, rng.choice(SELF_HARM_PROMPTS_ZH), pills_zh=PILLS_ZH, end_zh=END_ZH, cut_zh=CUT_ZH), "zh"
        else:
            text, lang = _fill(rng, rng.choice(SELF_HARM_PROMPTS_EN), pills=PILLS, end=END, cut=CUT), "en"
        if text not in seen:
            seen.add(text)
            yield {"prompt": text, "label": "unsafe", "lang": lang, "categories": ["S11"], "group": f"selfharm:{text}"}
        if len(seen) - len(NEVER_GENERATED) >= n:
            break


def crisis_replies(prompts: Iterable[Row], seed: int) -> Iterator[Row]:
    """A crisis-line reply to each self-harm prompt: a safe answer."""
    rng = random.Random(seed)
    for p in prompts:
        reply = rng.choice(CRISIS_ZH if p.get("lang") == "zh" else CRISIS_EN)
        row: Row = {"prompt": p["prompt"], "completion": reply, "label": "safe", "lang": p.get("lang", "en"),
                    "categories": []}
        if p.get("group"):
            row["group"] = p["group"]
        yield row


def benign_tech_prompts(n: int, seed: int) -> Iterator[Row]:
    """Code, shell, maths and business questions in English and Chinese (words like kill, attack,
    exploit, inject, hijack, crack used in their technical sense)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    for _ in range(n * 5):
        if len(seen) >= n:
            break
        roll = rng.random()
        if roll < 0.5:
            text, lang = _fill(rng, rng.choice(CODE_TASKS_EN), verb=CODE_VERBS, lang=CODE_LANGS), "en"
        elif roll < 0.75:
            text, lang = _fill(rng, rng.choice(MATH_BUSINESS_EN), f=FUNCS, a=range(2, 10), b=range(2, 10),
                               c=range(2, 30), p=(2, 3, 5, 7), biz=BIZ, day=DAYS), "en"
        else:
            text, lang = _fill(rng, rng.choice(BENIGN_ZH), verb_zh=VERBS_ZH, lang=CODE_LANGS[:6], topic_zh=TOPICS_ZH,
                               biz_zh=BIZ_ZH, day_zh=DAY_ZH, a=range(2, 50), b=range(2, 50), c=range(2, 50)), "zh"
        if rng.random() < 0.3 and lang == "en":
            text = text[0].lower() + text[1:].rstrip("?.")
        if text not in seen:
            seen.add(text)
            yield {"prompt": text, "label": "safe", "lang": lang, "categories": []}


def toxic_answers(texts: Iterable[Row], seed: int) -> Iterator[Row]:
    """Hateful or abusive text given as the assistant's answer: unsafe at the output stage."""
    rng = random.Random(seed)
    for r in texts:
        yield {**r, "prompt": rng.choice(TOXIC_ANSWER_PROMPTS), "completion": r["prompt"]}
