"""Teams' final message follows the model's last token in the next free slot of the stream's
pace: the text that came after the last update goes in the final, not in one more update the
final would wait a whole interval behind."""

from __future__ import annotations

import asyncio
import dataclasses

from botbuilder.core import TurnContext
from botbuilder.schema import Activity

from adapters.teams.sink import Outbox, TeamsReplySink
from tests.support.teams import APP_ID, FAST, PERSONAL, SQLITE_ONLY, TeamsBotUnderTest

PACED = dataclasses.replace(FAST, stream_interval=0.5)


@SQLITE_ONLY
async def test_the_last_text_goes_in_the_final_message(teams_bot: TeamsBotUnderTest) -> None:
    reference = TurnContext.get_conversation_reference(
        Activity().deserialize(teams_bot.message("personal_message"))
    )

    async def turn(context: TurnContext) -> None:
        sink = TeamsReplySink(outbox=Outbox(context, PACED), streaming=True, options=PACED)
        await sink.write("The first words ")
        deadline = asyncio.get_running_loop().time() + 5
        while not teams_bot.connector.stream_calls(PERSONAL):  # the first update is shown
            assert asyncio.get_running_loop().time() < deadline, "no update shown"
            await asyncio.sleep(0.01)
        # then the model's last token comes, and the answer ends
        await sink.write("and the last ones.")
        await sink.close()

    await teams_bot.teams.adapter.continue_conversation(reference, turn, bot_app_id=APP_ID)
    calls = teams_bot.connector.stream_calls(PERSONAL)
    kinds = [(c.stream_info or {}).get("streamType") for c in calls]
    assert kinds == ["streaming", "final"]
    (shown,) = teams_bot.connector.shown(PERSONAL)
    assert shown.text == "The first words and the last ones."
